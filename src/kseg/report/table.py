"""One row per experiment under ``runs_dir`` from the artefacts the stages wrote; markdown of the table.

Sources (every one optional but ``config.yaml``): ``fold<K>/best.pt`` (folds trained), ``fold<K>/metrics.csv``
(per-fold best val metric over the epoch rows, ``train.swa`` rows, training seconds), ``postprocess.json``
(OOF score at the default, tuned, cross-validated tuned; the TTA of the OOF), ``ensemble.json`` (an ensemble:
members, weights, optimistic and cross-validated scores), ``<kernel.dir>/<exp>/push.json`` (kernel versions
pushed, submissions and any leaderboard score they recorded). Config differences: the dotted keys whose values
differ between the trained experiments (``name`` and the data / runs / kernel paths left out).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kseg.layout import BEST, CONFIG, KernelLayout, RunLayout

log = logging.getLogger(__name__)

PATH_KEYS = ("name", "runs_dir", "data.root", "data.folds_csv", "kernel.dir", "train.init_from")
LB_KEYS = ("public_score", "publicScore", "private_score", "privateScore", "score")


@dataclass
class ExperimentRow:
    """What the report shows of one experiment (NaN / empty where an artefact is missing)."""

    name: str
    kind: str  # train | ensemble
    config: dict[str, Any]
    folds: list[int] = field(default_factory=list)
    fold_best: dict[int, float] = field(default_factory=dict)
    swa: str = ""  # "k of n folds kept" with train.swa
    default: float = math.nan
    tuned: float = math.nan
    cv: float = math.nan
    oof_tta: str = ""
    predict_tta: str = ""
    kernels: list[str] = field(default_factory=list)  # "v3 complete"
    lb: list[str] = field(default_factory=list)  # leaderboard scores / submission messages
    seconds: float = 0.0
    members: dict[str, float] = field(default_factory=dict)  # an ensemble's weights
    differences: dict[str, Any] = field(default_factory=dict)


def find_experiments(runs_dir: Path) -> list[str]:
    """Names (``a/b``) of the experiments under ``runs_dir``: the folders holding a ``config.yaml``, sorted."""
    found = [p.parent.relative_to(runs_dir).as_posix() for p in Path(runs_dir).rglob(CONFIG)]
    return sorted(n for n in found if n != "." and "wandb" not in n.split("/"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError) as e:
        log.warning("%s: unreadable (%s), left out of the report", path, e)
        return {}


def _score(d: dict[str, Any], key: str) -> float:
    v = d.get(key)
    return float(v) if isinstance(v, (int, float)) else math.nan


def _fold_metrics(layout: RunLayout, row: ExperimentRow) -> None:
    """Folds trained, per-fold best epoch score, train.swa outcome and training seconds from each fold folder."""
    kept = averaged = 0
    for fold, folder in layout.folds():
        if (folder / BEST).is_file():
            row.folds.append(fold)
        path = layout.metrics(fold)
        if not path.is_file():
            continue
        m = pd.read_csv(path)
        swa = m["swa_epochs"].notna() if "swa_epochs" in m else pd.Series(False, index=m.index)
        epochs = m[~swa]
        if len(epochs):
            row.fold_best[fold] = float(epochs["val_metric"].max())
        row.seconds += float(m["seconds"].sum())
        if swa.any():
            averaged += 1
            kept += int(bool(m.loc[swa, "swa_kept"].iloc[-1]))
    if averaged:
        row.swa = f"kept {kept}/{averaged}"


def _kernel(cfg: dict[str, Any], name: str, row: ExperimentRow) -> None:
    """Kernel versions and submissions recorded by ``kseg kernel push/status/submit`` (``push.json``)."""
    kernel_dir = (cfg.get("kernel") or {}).get("dir") or "kernels"
    record = _read_json(KernelLayout.of(kernel_dir, name).push_record)
    if not record:
        return
    for r in [*record.get("history", []), record]:
        k = r.get("kernel") or {}
        if k.get("version") is not None:
            row.kernels.append(f"v{k['version']} {k.get('status') or ''}".strip())
    for sub in record.get("submissions", []):
        score = next((sub[k] for k in LB_KEYS if sub.get(k) is not None), None)
        row.lb.append(
            f"v{sub.get('kernel_version')}: {score}" if score is not None else f"v{sub.get('kernel_version')}: -"
        )


def experiment_row(runs_dir: Path, name: str) -> ExperimentRow:
    """The ``ExperimentRow`` of experiment ``name`` (see the module docstring for the sources)."""
    layout = RunLayout(runs_dir, name)
    cfg = yaml.safe_load(layout.config.read_text()) or {}
    ens = _read_json(layout.ensemble)
    post = _read_json(layout.postprocess)
    row = ExperimentRow(name, "ensemble" if ens else "train", cfg)
    _fold_metrics(layout, row)
    scores = post.get("scores") or {}
    row.default, row.tuned, row.cv = _score(scores, "default"), _score(scores, "tuned"), _score(scores, "cv")
    row.oof_tta = str(post.get("oof_tta") or "")
    row.predict_tta = str((cfg.get("predict") or {}).get("tta") or "")
    if ens:
        row.members = {m["run"]: float(m["weight"]) for m in ens.get("members", [])}
        row.cv = _score(ens.get("scores") or {}, "cv")  # weights + post-processing chosen on K-1 folds
        row.folds = [int(f) for f in ens.get("folds") or []]
    _kernel(cfg, name, row)
    return row


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def config_differences(configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{experiment: {dotted key: value}} of the keys whose values differ between ``configs`` (paths left out)."""
    flat = {name: _flat(c) for name, c in configs.items()}
    keys = sorted({k for f in flat.values() for k in f} - set(PATH_KEYS))
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat.values()}) > 1]
    return {name: {k: f.get(k) for k in differ} for name, f in flat.items()}


def collect(runs_dir: Path) -> list[ExperimentRow]:
    """Every experiment's row, config differences among the trained ones filled in."""
    rows = [experiment_row(Path(runs_dir), n) for n in find_experiments(Path(runs_dir))]
    trained = {r.name: r.config for r in rows if r.kind == "train"}
    diffs = config_differences(trained) if len(trained) > 1 else {}
    for r in rows:
        r.differences = diffs.get(r.name, {})
    return rows


def _f(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.4f}"


COLUMNS = (
    "experiment",
    "folds",
    "per-fold best",
    "OOF default",
    "tuned",
    "CV tuned",
    "TTA",
    "kernels",
    "LB",
    "config differences",
    "train time",
)


def row_cells(r: ExperimentRow) -> list[str]:
    """The markdown cells of a row, in ``COLUMNS`` order."""
    best = " ".join(f"{r.fold_best[k]:.4f}" for k in sorted(r.fold_best)) or "-"
    if r.swa:
        best += f" (swa {r.swa})"
    folds = f"{len(r.folds)} ({','.join(map(str, r.folds))})" if r.folds else "0"
    if r.members:
        diff = "ensemble of " + ", ".join(f"{m} {w:.2f}" for m, w in r.members.items())
    else:
        diff = ", ".join(f"{k}={json.dumps(v)}" for k, v in r.differences.items()) or "-"
    tta = f"oof {r.oof_tta or '-'} / predict {r.predict_tta or '-'}"
    minutes = f"{r.seconds / 60:.1f} min" if r.seconds else "-"
    cells = [r.name, folds, best, _f(r.default), _f(r.tuned), _f(r.cv), tta]
    return [*cells, ", ".join(r.kernels) or "-", ", ".join(r.lb) or "-", diff, minutes]


def markdown(rows: list[ExperimentRow]) -> str:
    """The report table as GitHub markdown (``|`` inside cells escaped)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row_cells(r)) + " |")
    return "\n".join(lines) + "\n"
