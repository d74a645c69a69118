"""``kseg kernel scores``: leaderboard scores of the submissions ``kseg kernel submit`` recorded.

``kaggle competitions submissions COMP -v`` lists the team's submissions (newest first) with their status and
public / private scores. Each submission recorded in ``kernels/<exp>/push.json`` is matched once to a server
row (same description as its message, submitted no earlier than a minute before it was recorded, the earliest
such row not already matched) and keeps that row's ``ref``; later refreshes follow the ``ref``. Its ``status``,
``public_score`` and ``private_score`` are written back into ``push.json``, where ``kseg report`` reads them.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from kseg.config import Config
from kseg.kernel.kaggle_cli import KaggleCLI, parse_submissions
from kseg.kernel.metadata import competition_slug, write_json
from kseg.kernel.push import load_record

log = logging.getLogger(__name__)

__all__ = ["match_submissions", "refresh_scores"]

_SLACK = dt.timedelta(minutes=1)  # the server's clock against the one that wrote push.json


def _time(text: str | None) -> dt.datetime | None:
    """ISO time (``push.json``'s, or the CLI's ``2026-12-01 17:50:00.123000+00:00``) in UTC; None if unparsable."""
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)  # the API's times are UTC


def match_submissions(recorded: list[dict[str, Any]], rows: list[dict[str, Any]]) -> int:
    """Copy each server row's ref, status and scores onto the recorded submission it belongs to (in place).

    ``recorded``: ``push.json``'s submissions (``message``, ``at``, maybe ``ref``); ``rows``:
    ``parse_submissions`` output. Returns how many recorded submissions have a server row now.
    """
    by_ref = {r["ref"]: r for r in rows}
    claimed = {s["ref"] for s in recorded if s.get("ref") in by_ref}
    oldest_first = sorted(rows, key=lambda r: _time(r["date"]) or dt.datetime.max.replace(tzinfo=dt.timezone.utc))
    matched = 0
    for sub in sorted(recorded, key=lambda s: s.get("at") or ""):
        row = by_ref.get(sub.get("ref"))
        if row is None:
            at = _time(sub.get("at"))
            row = next(
                (
                    r
                    for r in oldest_first
                    if r["ref"] not in claimed
                    and r["description"] == sub.get("message")
                    and (at is None or (_time(r["date"]) or at) >= at - _SLACK)
                ),
                None,
            )
        if row is None:
            continue
        claimed.add(row["ref"])
        sub.update({k: row[k] for k in ("ref", "status", "public_score", "private_score")})
        matched += 1
    return matched


def refresh_scores(cfg: Config, cli: KaggleCLI | None = None) -> list[dict[str, Any]]:
    """Fetch the competition's submissions, update ``push.json``'s with their status and scores; returns them."""
    cli = cli or KaggleCLI()
    record = load_record(cfg)
    recorded = record.get("submissions") or []
    if not recorded:
        raise FileNotFoundError(f"{cfg.kernel_layout.push_record}: no submission recorded (`kseg kernel submit` first)")
    rows = parse_submissions(cli("competitions", "submissions", competition_slug(cfg), "-v", "--page-size", "100"))
    matched = match_submissions(recorded, rows)
    if matched < len(recorded):
        log.warning("%d of %d recorded submissions not found on the server", len(recorded) - matched, len(recorded))
    record["scores_checked_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    write_json(cfg.kernel_layout.push_record, record)
    return recorded
