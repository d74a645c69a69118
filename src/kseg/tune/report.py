"""Tuning outputs: ``postprocess.json`` (read back by ``kseg.postprocess.load_postprocess``), ``tune.csv``
(every cell's score per class, overall and per fold) and ``tune_<class>.png`` plots."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from kseg.atomic import AtomicFile, atomic_write_text
from kseg.config import Config
from kseg.postprocess import params_to_dict
from kseg.tune.grid import AXES
from kseg.tune.run import TuneResult

log = logging.getLogger(__name__)

RULE = "foreground: round(p*255) > floor(float32(t)*255); components 8-connected"


def _num(x: float) -> float | None:
    """JSON-safe float (NaN -> null)."""
    return None if math.isnan(x) else round(float(x), 6)


def selection_note(selection: dict[str, str]) -> str:
    """What the CV score is worth given how each run's OOF epoch was chosen (``TuneResult.selection``)."""
    picked = sorted(r for r, s in selection.items() if s not in ("last", "last+plateau"))
    plateau = sorted(r for r, s in selection.items() if s == "last+plateau")
    if picked:
        which = "" if len(picked) == len(selection) else f" of {', '.join(picked)}"
        return (
            f"the CV score is optimistic: each fold's checkpoint and OOF{which} are the epoch with the best "
            "score on that same held fold (train.select=best); for an estimate with no selection on the held "
            "fold, train with train.select=last (train.patience=0)"
        )
    if plateau:
        return (
            f"OOF of the last epoch (train.select=last), but the plateau schedule of {', '.join(plateau)} "
            "followed the held fold's metric: the CV score is slightly optimistic"
        )
    return "OOF of each fold's last epoch (train.select=last): no epoch was selected on the held fold"


def postprocess_dict(result: TuneResult, experiment: str, oof_tta: str = "") -> dict:
    """The content of ``postprocess.json`` (``oof_tta``: the TTA of the OOF it was tuned on, "" = training's)."""
    classes = []
    for name, params, ch in zip(result.classes, result.params, result.choices, strict=True):
        classes.append(
            {
                "name": name,
                "params": params_to_dict(params),
                "scores": {"default": _num(ch.score_default), "tuned": _num(ch.score_tuned), "cv": _num(ch.score_cv)},
                "cv_params": [params_to_dict(result.grid.params(c)) for c in ch.cv_cells],
            }
        )
    return {
        "version": 1,
        "experiment": experiment,
        "runs": result.runs,
        **({"weights": result.weights} if result.weights else {}),  # kseg ensemble: the runs' weights
        "metric": result.metric,
        "metric_params": result.metric_params,
        "n_images": result.n_images,
        "folds": result.folds,
        "oof_tta": oof_tta or "none",
        "exclusive": result.exclusive,
        "fold_images": result.table.counts.tolist(),
        "scores": {
            "default": _num(result.score_default),
            "tuned": _num(result.score_tuned),
            "cv": _num(result.score_cv),
        },
        "epoch_selection": result.selection,
        "cv_note": selection_note(result.selection),
        "classes": classes,
        "grid": result.grid.to_dict(),
        "rule": RULE,
    }


def grid_frame(result: TuneResult) -> pd.DataFrame:
    """One row per class x cell: class, the 6 parameters, score (all OOF), score_fold<K>."""
    cells = pd.DataFrame([params_to_dict(p) for p in result.grid.cells()], columns=list(AXES))
    frames = []
    for c, name in enumerate(result.classes):
        df = cells.copy()
        df.insert(0, "class", name)
        df["score"] = np.round(result.table.cell_means(c), 6)
        for k, fold in enumerate(result.folds):
            df[f"score_fold{fold}"] = np.round(result.table.fold_means(c)[k], 6)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def plot_class(result: TuneResult, c: int, path: Path) -> None:
    """Score vs threshold, one line per min_size, other axes at the chosen values; PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = result.grid
    means = result.table.cell_means(c).reshape(grid.shape)
    chosen = np.unravel_index(result.choices[c].cell, grid.shape)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for si, size in enumerate(grid.min_sizes):
        ax.plot(
            grid.thresholds, means[(slice(None), si) + tuple(chosen[2:])], marker="o", ms=3, label=f"min_size {size}"
        )
    ax.axhline(result.choices[c].score_default, color="grey", ls="--", lw=1, label="default (thr 0.5)")
    ax.plot(grid.thresholds[chosen[0]], means[chosen], "r*", ms=12, label="chosen")
    rest = ", ".join(f"{a}={grid.axes[i][chosen[i]]}" for i, a in enumerate(AXES) if i >= 2 and len(grid.axes[i]) > 1)
    ax.set_title(f"{result.classes[c]} ({result.metric}){': ' + rest if rest else ''}", fontsize=10)
    ax.set_xlabel("threshold")
    ax.set_ylabel(result.metric)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with AtomicFile(path, "wb") as f:
            fig.savefig(f, format="png", dpi=90)
    finally:
        plt.close(fig)


def write_outputs(cfg: Config, result: TuneResult, plots: bool = True) -> dict[str, Path]:
    """Write postprocess.json, tune.csv and tune_<class>.png into ``cfg.run_dir``; returns the paths."""
    out = cfg.layout
    paths = {"postprocess": out.postprocess, "csv": out.tune_csv}
    atomic_write_text(
        paths["postprocess"], json.dumps(postprocess_dict(result, cfg.name, cfg.tune.oof_tta), indent=2) + "\n"
    )
    atomic_write_text(paths["csv"], grid_frame(result).to_csv(index=False))
    if plots:
        for c, name in enumerate(result.classes):
            paths[f"plot_{name}"] = out.tune_plot(name)
            plot_class(result, c, paths[f"plot_{name}"])
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
