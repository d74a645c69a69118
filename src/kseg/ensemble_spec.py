"""The ensemble file ``runs/<ensemble>/ensemble.json`` (``RunLayout.ensemble``): what ``kseg ensemble`` chose.

``{"version": 1, "experiment": <ensemble name>, "members": [{"run", "weight", "count"}, ...], "folds": [...],
"oof_tta": "none" | <TTA>, "metric", "scores": {...}, "selection": {...}}``. ``weight`` is the share of the
member in the probability mean (the weights sum to 1; 0 = not chosen), ``count`` its copies in the greedy
selection. ``kseg predict`` and ``kseg kernel build`` of the ensemble's config read the members and weights from it
and the post-processing from the ``postprocess.json`` next to it (tuned on the same weighted OOF mean).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kseg.atomic import atomic_write_text

VERSION = 1


@dataclass(frozen=True)
class EnsembleSpec:
    """Members {run: weight} (weights > 0 only, summing to 1) and the record they came with."""

    experiment: str
    weights: dict[str, float]
    folds: tuple[int, ...] = ()
    oof_tta: str = "none"
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def runs(self) -> list[str]:
        """The members with a weight, in file order."""
        return list(self.weights)


def ensemble_record(
    experiment: str, counts: dict[str, int], folds: list[int], oof_tta: str, **extra: Any
) -> dict[str, Any]:
    """The JSON content of an ensemble file from each candidate run's greedy-selection ``counts``."""
    total = sum(counts.values())
    if total <= 0:
        raise ValueError("an ensemble needs a member with a weight")
    members = [{"run": r, "weight": c / total, "count": int(c)} for r, c in counts.items()]
    return {
        "version": VERSION,
        "experiment": experiment,
        "members": members,
        "folds": list(folds),
        "oof_tta": oof_tta or "none",
        **extra,
    }


def write_ensemble(path: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (``ensemble_record``) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def read_ensemble(path: Path) -> EnsembleSpec:
    """The ``EnsembleSpec`` of an ensemble file; ValueError naming the file and field when it is malformed."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    members = data.get("members")
    if not isinstance(members, list) or not members:
        raise ValueError(f"{path}: 'members' must be a non-empty list of {{run, weight}}")
    weights: dict[str, float] = {}
    for i, m in enumerate(members):
        if not isinstance(m, dict) or not isinstance(m.get("run"), str):
            raise ValueError(f"{path}: members[{i}]: expected {{'run': name, 'weight': number}}, got {m!r}")
        w = m.get("weight")
        if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"{path}: members[{i}] ({m['run']}): weight must be a number >= 0, got {w!r}")
        if m["run"] in weights:
            raise ValueError(f"{path}: members[{i}]: run {m['run']!r} listed twice")
        weights[m["run"]] = float(w)
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"{path}: every member has weight 0")
    chosen = {r: w / total for r, w in weights.items() if w > 0}
    folds = tuple(int(f) for f in data.get("folds") or ())
    return EnsembleSpec(str(data.get("experiment", "")), chosen, folds, str(data.get("oof_tta") or "none"), data)


def find_ensemble(path: Path) -> EnsembleSpec | None:
    """``read_ensemble(path)`` when the file exists, else None."""
    return read_ensemble(path) if Path(path).is_file() else None
