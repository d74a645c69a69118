"""Experiment tracking with wandb; never fatal: any wandb failure becomes a warning and tracking stops.

One wandb run per fold: ``group`` = experiment name, ``job_type`` = ``fold<K>``, the resolved config as
wandb config, per-epoch metrics, a few validation images with predicted / true masks, best score in the
summary. ``wandb.mode`` offline writes everything under ``runs/<exp>/wandb/`` without any network call.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from kseg.config import Config, config_to_dict
from kseg.layout import fold_dir_name

log = logging.getLogger(__name__)


class Tracker:
    """No-op tracker (wandb disabled, not rank 0, or wandb failed)."""

    run_id: str | None = None

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_images(self, images: list[tuple[np.ndarray, np.ndarray, np.ndarray]], step: int) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbTracker(Tracker):
    """Thin guard around a wandb run."""

    def __init__(self, run: Any, class_names: tuple[str, ...]) -> None:
        self.run = run
        self.run_id = run.id
        self.class_labels = {0: "background", **{i + 1: n for i, n in enumerate(class_names)}}

    def _guard(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        if self.run is None:
            return
        try:
            fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - tracking must never stop training
            log.warning("wandb %s failed (%s: %s); tracking stops for this run", what, type(e).__name__, e)
            self.run = None

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._guard("log", lambda: self.run.log(metrics, step=step))

    def log_images(self, images: list[tuple[np.ndarray, np.ndarray, np.ndarray]], step: int) -> None:
        """``images``: (uint8 [h,w,3], predicted label map [h,w], true label map [h,w]) triples."""

        def _log() -> None:
            import wandb

            items = [
                wandb.Image(
                    img,
                    masks={
                        "prediction": {"mask_data": pred, "class_labels": self.class_labels},
                        "ground_truth": {"mask_data": true, "class_labels": self.class_labels},
                    },
                )
                for img, pred, true in images
            ]
            self.run.log({"val/examples": items}, step=step)

        if images:
            self._guard("log_images", _log)

    def summary(self, values: dict[str, Any]) -> None:
        def _set() -> None:
            for k, v in values.items():
                self.run.summary[k] = v

        self._guard("summary", _set)

    def finish(self) -> None:
        self._guard("finish", lambda: self.run.finish())
        self.run = None


def wandb_init(cfg: Config, job_type: str, config: dict[str, Any], **extra: Any) -> Any:
    """``wandb.init`` of one run of the experiment (group = experiment, name = ``<exp>/<job_type>``).

    Raises whatever wandb raises; callers turn that into a warning.
    """
    import wandb

    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    return wandb.init(
        mode=cfg.wandb.mode,
        project=cfg.wandb.project,
        entity=cfg.wandb.entity or None,
        group=cfg.name,
        job_type=job_type,
        name=f"{cfg.name}/{job_type}",
        config=config,
        dir=str(cfg.run_dir),
        tags=list(cfg.wandb.tags),
        settings=wandb.Settings(console="off", silent=True),
        **extra,
    )


def start_tracker(cfg: Config, fold: int, run_id: str | None = None) -> Tracker:
    """A wandb run for ``fold`` (resumed when ``run_id`` is given), or a no-op tracker."""
    if cfg.wandb.mode == "disabled":
        return Tracker()
    try:
        run = wandb_init(
            cfg,
            fold_dir_name(fold),
            config_to_dict(cfg),
            id=run_id,
            resume="allow" if run_id else None,
        )
        return WandbTracker(run, cfg.competition.classes)
    except Exception as e:  # noqa: BLE001
        log.warning("wandb.init failed (%s: %s); training continues without tracking", type(e).__name__, e)
        return Tracker()


def label_map(masks: np.ndarray) -> np.ndarray:
    """Binary masks [C, h, w] -> uint8 [h, w]: 0 background, c+1 where class c (highest class wins)."""
    c = masks.shape[0]
    weights = np.arange(1, c + 1, dtype=np.uint8).reshape(c, 1, 1)
    return (masks.astype(bool) * weights).max(axis=0).astype(np.uint8)


def display_image(image: np.ndarray) -> np.ndarray:
    """Normalised float [3, h, w] -> uint8 [h, w, 3] min-max stretched for viewing."""
    img = image.transpose(1, 2, 0).astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    return ((img - lo) / max(hi - lo, 1e-6) * 255).round().astype(np.uint8)
