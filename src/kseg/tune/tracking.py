"""wandb runs of ``kseg tune`` and ``kseg ensemble``: one run each in the experiment's group.

``job_type=tune`` / ``ensemble``, the chosen parameters (and weights) as config, the default, tuned and
cross-validated scores in the summary, the tune table (and an ensemble's members and selection steps) as
``wandb.Table``. ``wandb.mode`` as for training: ``offline`` writes under ``runs/<exp>/wandb/`` without any
network call, ``disabled`` does nothing. Never fatal: a wandb failure is a warning.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pandas as pd

from kseg.config import Config, config_to_dict
from kseg.postprocess import params_to_dict
from kseg.train.tracking import wandb_init
from kseg.tune.report import grid_frame
from kseg.tune.run import TuneResult

if TYPE_CHECKING:
    from kseg.tune.blend import EnsembleResult

log = logging.getLogger(__name__)


def log_job(
    cfg: Config, job_type: str, config: dict[str, Any], summary: dict[str, Any], tables: dict[str, pd.DataFrame]
) -> str | None:
    """One finished wandb run (group = experiment, ``job_type``); its id, None when disabled or on failure."""
    if cfg.wandb.mode == "disabled":
        return None
    try:
        import wandb

        run = wandb_init(cfg, job_type, {"experiment": config_to_dict(cfg), **config})
        run.summary.update(summary)
        run.log({name: wandb.Table(dataframe=df) for name, df in tables.items()})
        run.finish()
        return run.id
    except Exception as e:  # noqa: BLE001 - tracking must never fail a stage
        log.warning("wandb %s run failed (%s: %s); results are on disk only", job_type, type(e).__name__, e)
        return None


def _scores(r: TuneResult) -> dict[str, float]:
    return {"score_default": r.score_default, "score_tuned": r.score_tuned, "score_cv": r.score_cv}


def _params(r: TuneResult) -> dict[str, Any]:
    return {name: params_to_dict(p) for name, p in zip(r.classes, r.params, strict=True)}


def log_tune(cfg: Config, result: TuneResult) -> str | None:
    """The ``job_type=tune`` run of a ``kseg tune`` result."""
    config = {"runs": result.runs, "folds": result.folds, "oof_tta": cfg.tune.oof_tta or "none"}
    return log_job(
        cfg, "tune", {**config, "params": _params(result)}, _scores(result), {"tune_table": grid_frame(result)}
    )


def log_ensemble(cfg: Config, result: EnsembleResult, steps: int) -> str | None:
    """The ``job_type=ensemble`` run: weights, scores (optimistic, CV, each member's), members and steps tables."""
    members = pd.DataFrame([{"run": r, "weight": result.weights[r], **_scores(t)} for r, t in result.members.items()])
    path = result.path
    selection = pd.DataFrame({"step": range(1, len(path.added) + 1), "added": [result.runs[j] for j in path.added]})
    selection["score"] = path.scores
    config = {"runs": result.runs, "weights": result.weights, "steps": steps, "grid": result.grid}
    summary = {
        **_scores(result.final),
        "score_optimistic": result.score_tuned,
        "score_cv": result.score_cv,  # weights + post-processing chosen on K-1 folds
        "score_cv_postprocess_only": result.final.score_cv,
        **{f"member/{r}/score_cv": t.score_cv for r, t in result.members.items()},
    }
    tables = {"tune_table": grid_frame(result.final), "members": members, "selection": selection}
    return log_job(cfg, "ensemble", {**config, "params": _params(result.final)}, summary, tables)
