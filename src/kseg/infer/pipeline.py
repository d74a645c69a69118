"""``kseg predict`` end to end: ensemble -> post-processing -> RLE -> submission (+ probs, pseudo-labels).

Everything streams: per test batch the ensemble probabilities are restored to the submission size,
quantized, post-processed, encoded and handed to the writers; only RLE strings of images ahead of the
sample order (none when images come in sample order) and a few numbers per image are kept.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from kseg.competition import list_test_ids
from kseg.config import Config
from kseg.infer.ensemble import Ensemble
from kseg.infer.probs_store import ProbsWriter
from kseg.infer.pseudo import PseudoLabelWriter, check_confidence
from kseg.infer.stream import predict_images
from kseg.layout import BEST, submission_path
from kseg.submission.write import SubmissionWriter

log = logging.getLogger(__name__)

__all__ = [
    "ALLOW_MISMATCH_FLAG",
    "PostprocessMismatchError",
    "PredictResult",
    "check_postprocess_ensemble",
    "default_submission_path",
    "load_params",
    "postprocess_mismatch",
    "predict_submission",
]

ALLOW_MISMATCH_FLAG = "--allow-postprocess-mismatch"


class PostprocessMismatchError(ValueError):
    """``postprocess.json`` was tuned on another ensemble (runs, folds or TTA) than the one predicting."""


@dataclass
class PredictResult:
    """What ``predict_submission`` did."""

    path: Path
    images: int
    seconds: float
    members: int
    views: int
    empty_share: list[float] = field(default_factory=list)  # per class, share of images with an empty mask
    skipped: list[str] = field(default_factory=list)
    pseudo_path: Path | None = None
    pseudo_kept: int = 0
    probs_dir: Path | None = None


def default_submission_path(cfg: Config, now: datetime | None = None) -> Path:
    """``submissions/<exp>-<YYYYmmdd-HHMMSS>.csv`` ('/' in the experiment name becomes '-')."""
    return submission_path(cfg.name, now)


def load_params(cfg: Config) -> list[Any]:
    """Per-class post-processing from ``runs/<exp>/postprocess.json``, else the defaults (with a warning)."""
    from kseg.postprocess import default_params, load_postprocess

    path = cfg.layout.postprocess
    if path.is_file():
        params = load_postprocess(path, cfg.competition.num_classes)
        log.info("post-processing from %s", path)
        return params
    log.warning("%s not found: using the default post-processing (threshold 0.5); run `kseg tune` first", path)
    return default_params(cfg.competition.num_classes)


def postprocess_mismatch(
    record: dict[str, Any], runs: dict[str, list[int]], tta: str, weights: dict[str, float] | None = None
) -> list[str]:
    """How the ensemble ``runs`` ({experiment: folds}) with ``tta`` differs from the one a ``postprocess.json``
    ``record`` was tuned on (its ``runs``, ``folds`` and ``oof_tta``); [] when they agree.

    Experiments and folds compare as sets. ``weights`` {experiment: weight} of the predicting ensemble (None:
    equal) compare, normalised, with the record's ``weights`` (``kseg ensemble``; absent: equal). A key the record
    lacks otherwise (files written before it was recorded) is not compared.
    """
    diffs = []
    tuned_runs, tuned_folds, tuned_tta = record.get("runs"), record.get("folds"), record.get("oof_tta")
    if tuned_runs is not None and sorted(tuned_runs) != sorted(runs):
        diffs.append(f"runs {sorted(tuned_runs)} -> {sorted(runs)}")
    if tuned_folds is not None:
        for exp in sorted(runs):
            if (tuned_runs is None or exp in tuned_runs) and sorted(runs[exp]) != sorted(tuned_folds):
                diffs.append(f"folds of {exp} {sorted(tuned_folds)} -> {sorted(runs[exp])}")
    if tuned_tta is not None and tuned_tta != tta:
        diffs.append(f"tta {tuned_tta} -> {tta}")
    tuned_w, want = record.get("weights") or {r: 1.0 for r in runs}, weights or {r: 1.0 for r in runs}  # equal
    if not diffs and _normalised(tuned_w) != _normalised(want):  # kseg ensemble's weights differ
        diffs.append(f"weights {_normalised(tuned_w)} -> {_normalised(want)}")
    return diffs


def _normalised(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {r: round(w / total, 6) for r, w in sorted(weights.items())}


def check_postprocess_ensemble(
    path: Path, runs: dict[str, list[int]], tta: str, allow: bool = False, weights: dict[str, float] | None = None
) -> list[str]:
    """Refuse (``PostprocessMismatchError``) to apply ``path`` to an ensemble other than the one it was tuned on.

    ``runs``: {experiment: folds} of the predicting checkpoints, ``weights`` their experiment weights (None:
    equal; ``kseg ensemble``'s ``postprocess.json`` records its weights). With ``allow`` the differences are only
    logged as a warning. Returns the differences ([] when ``path`` is absent or matches).
    """
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    diffs = postprocess_mismatch(record, runs, tta, weights)
    if not diffs:
        return diffs
    tuned = f"--runs {' '.join(record.get('runs') or [])} --folds {','.join(map(str, record.get('folds') or []))}"
    msg = (
        f"{path} was tuned on another ensemble than this prediction ({'; '.join(diffs)}): its thresholds, "
        f"min sizes and gates may not carry over. Predict with the ensemble it was tuned on ({tuned} --tta "
        f"{record.get('oof_tta', 'none')}), or tune on this one: OOF predicted with `kseg predict --oof --tta {tta}` "
        f"for each run, then `kseg tune --runs {' '.join(sorted(runs))} tune.oof_tta={tta}`"
    )
    if not allow:
        raise PostprocessMismatchError(f"{msg}; or pass {ALLOW_MISMATCH_FLAG} to predict with it anyway")
    log.warning("%s (%s given: predicting with it anyway)", msg, ALLOW_MISMATCH_FLAG)
    return diffs


def ensemble_runs(ensemble: Ensemble) -> dict[str, list[int]]:
    """{experiment: sorted folds} of an ensemble's members."""
    runs: dict[str, list[int]] = {}
    for m in ensemble.members:
        runs.setdefault(m.exp, []).append(m.fold)
    return {exp: sorted(folds) for exp, folds in runs.items()}


def chosen_members(cfg: Config, runs: Sequence[str]) -> tuple[list[str], dict[str, float] | None]:
    """(runs, experiment weights) to predict with: those of ``runs/<exp>/ensemble.json`` when ``kseg ensemble``
    wrote one for the config's experiment (``runs`` given must then be its members), else ``runs`` (default
    the config's experiment) with equal weights (None)."""
    from kseg.ensemble_spec import find_ensemble

    spec = find_ensemble(cfg.layout.ensemble)
    if spec is None:
        return list(runs or (cfg.name,)), None
    if runs and sorted(runs) != sorted(spec.runs):
        raise ValueError(
            f"{cfg.layout.ensemble} chose runs {spec.runs}, --runs gives {list(runs)}: drop --runs to predict with "
            "the chosen ensemble, or predict with another config's experiment"
        )
    log.info("ensemble from %s: %s", cfg.layout.ensemble, ", ".join(f"{r} {w:.3f}" for r, w in spec.weights.items()))
    return spec.runs, spec.weights


def _load_ensemble(cfg: Config, runs: Sequence[str], folds: Sequence[int], tta: str, weights: str) -> Ensemble:
    """The checkpoints of ``runs`` (default the config's experiment, or its ``ensemble.json``), ``folds``
    (default ``predict.folds``)."""
    members, exp_weights = chosen_members(cfg, runs)
    return Ensemble.from_runs(
        cfg,
        members,
        folds or cfg.predict.folds,
        tta=tta,
        device=cfg.train.device,
        amp=cfg.predict.amp,
        weights=weights,
        exp_weights=exp_weights,
    )


def _checked_params(cfg: Config, ensemble: Ensemble, tta: str, allow_mismatch: bool) -> list[Any]:
    """Per-class post-processing for ``ensemble``: tuned on it (unless ``allow_mismatch``), aux gates only
    with an aux head."""
    check_postprocess_ensemble(
        cfg.layout.postprocess, ensemble_runs(ensemble), tta, allow=allow_mismatch, weights=ensemble.exp_weights
    )
    params = load_params(cfg)
    has_aux = any(getattr(m.model, "aux_head", False) for m in ensemble.members)
    gated = [cfg.competition.classes[c] for c, p in enumerate(params) if p.aux_gate > 0]
    if gated and not has_aux:
        raise ValueError(f"postprocess.json uses aux_gate for {gated} but no checkpoint has an aux head")
    return params


@dataclass
class _Streamed:
    """What the writers wrote: submission path, images predicted, empty masks per class [C], skipped ids."""

    path: Path
    images: int
    empty: np.ndarray
    skipped: list[str]
    pseudo_path: Path | None
    pseudo_kept: int


def _stream(
    cfg: Config,
    ensemble: Ensemble,
    params: list[Any],
    ids: list[str],
    sample: Path,
    out_path: Path,
    save_probs: str | Path | None,
    pseudo_labels: str | Path | None,
    confidence: float | None,
    progress: bool,
) -> _Streamed:
    """Predict, post-process and encode test images batch by batch into the submission (+ probs, pseudo)."""
    from kseg.postprocess import apply_postprocess

    if cfg.tile.enabled:  # slides larger than memory: sliding windows, RLEs streamed (kseg.infer.tiled)
        return _stream_slides(cfg, ensemble, params, ids, sample, out_path, save_probs or pseudo_labels, progress)
    spec = cfg.competition
    empty = np.zeros(spec.num_classes, dtype=np.int64)
    n = 0
    with ExitStack() as stack:
        writer = SubmissionWriter(spec, sample, out_path)
        stack.callback(writer.abort)  # no-op after a successful close
        probs_writer = ProbsWriter(save_probs, spec.classes) if save_probs else None
        pseudo = None
        if pseudo_labels is not None:
            pseudo = PseudoLabelWriter(spec, pseudo_labels, cfg.predict.pseudo_min_fraction)
            stack.callback(pseudo.abort)
        for pred in predict_images(
            ensemble,
            ids,
            cfg.data_root / spec.test_images,
            confidence=confidence if pseudo is not None else None,
            progress=progress,
        ):
            masks = apply_postprocess(pred.q, params, pred.aux, spec.exclusive)  # argmax first when exclusive
            writer.add(pred.image_id, spec.rle.encode_batch(masks))
            empty += ~masks.reshape(masks.shape[0], -1).any(axis=1)
            n += 1
            if probs_writer is not None:
                probs_writer.add(pred.image_id, pred.q, pred.aux)
            if pseudo is not None and pred.confident is not None:
                pseudo.add(pred.image_id, masks, pred.confident, pred.native_size)
        skipped = writer.missing
        if skipped:  # data.on_bad_image=skip dropped them: Kaggle still needs their rows
            log.warning("%d unreadable test image(s) get empty masks: %s", len(skipped), skipped[:5])
            for image_id in skipped:
                writer.add(image_id, [""] * spec.num_classes)
        path = writer.close()
        pseudo_path = pseudo.close() if pseudo is not None else None
        if probs_writer is not None:
            probs_writer.close()
    return _Streamed(path, n, empty, skipped, pseudo_path, pseudo.kept if pseudo is not None else 0)


def _stream_slides(
    cfg: Config,
    ensemble: Ensemble,
    params: list[Any],
    ids: list[str],
    sample: Path,
    out_path: Path,
    extra: str | Path | None,
    progress: bool,
) -> _Streamed:
    """``tile.size > 0``: each test slide predicted by sliding windows and encoded in strips into the submission."""
    from kseg.infer.tiled import slide_rles

    if extra:
        raise ValueError(f"tile.size={cfg.tile.size}: --save-probs and --pseudo-labels need whole images, not slides")
    spec = cfg.competition
    empty = np.zeros(spec.num_classes, dtype=np.int64)
    skipped: list[str] = []
    with ExitStack() as stack:
        writer = SubmissionWriter(spec, sample, out_path)
        stack.callback(writer.abort)  # no-op after a successful close
        for res in slide_rles(ensemble, params, ids, cfg.data_root / spec.test_images, progress):
            writer.add(res.image_id, res.rles)
            empty += [spec.rle.is_empty(r) for r in res.rles]
            skipped += [res.image_id] if res.skipped else []
        path = writer.close()
    return _Streamed(path, len(ids) - len(skipped), empty, skipped, None, 0)


def _summary(ensemble: Ensemble, out: _Streamed, seconds: float, save_probs: str | Path | None) -> PredictResult:
    """The ``PredictResult`` of a finished prediction (logged)."""
    n = out.images
    result = PredictResult(
        path=out.path,
        images=n,
        seconds=seconds,
        members=len(ensemble),
        views=len(ensemble.pairs),
        empty_share=(out.empty / max(n, 1)).tolist(),
        skipped=out.skipped,
        pseudo_path=out.pseudo_path,
        pseudo_kept=out.pseudo_kept,
        probs_dir=Path(save_probs) if save_probs else None,
    )
    log.info("wrote %s: %d images in %.1fs (%.2f images/s)", out.path, n, seconds, n / max(seconds, 1e-9))
    if out.pseudo_path is not None:
        log.info("pseudo-labels: %d of %d test images confident -> %s", out.pseudo_kept, n, out.pseudo_path)
    return result


def predict_submission(
    cfg: Config,
    runs: Sequence[str] = (),
    folds: Sequence[int] = (),
    tta: str | None = None,
    out: str | Path | None = None,
    save_probs: str | Path | None = None,
    pseudo_labels: str | Path | None = None,
    confidence: float | None = None,
    weights: str = BEST,
    ensemble: Ensemble | None = None,
    progress: bool = True,
    allow_postprocess_mismatch: bool = False,
) -> PredictResult:
    """Predict the competition's test images and write the submission csv; returns a summary.

    ``runs`` default to the config's experiment, ``folds`` to ``predict.folds`` (empty = every fold
    found), ``tta`` to ``predict.tta``. Post-processing comes from ``runs/<cfg.name>/postprocess.json``,
    refused when it was tuned on another ensemble unless ``allow_postprocess_mismatch``.
    """
    spec = cfg.competition
    tta = tta or cfg.predict.tta
    if ensemble is None:
        ensemble = _load_ensemble(cfg, runs, folds, tta, weights)
    params = _checked_params(cfg, ensemble, tta, allow_postprocess_mismatch)
    sample = cfg.data_root / spec.sample_submission
    if not sample.is_file():
        raise FileNotFoundError(f"sample submission not found: {sample} (the submission copies its rows)")
    ids = list_test_ids(spec, cfg.data_root)
    out_path = Path(out) if out else default_submission_path(cfg)
    if pseudo_labels is not None:
        confidence = check_confidence(confidence if confidence is not None else cfg.predict.pseudo_confidence)
    log.info(
        "predicting %d test images with %d checkpoint(s) of %s, tta=%s (%d views), device %s",
        len(ids),
        len(ensemble),
        ", ".join(ensemble.experiments),
        tta,
        len(ensemble.pairs),
        ensemble.device,
    )
    start = time.perf_counter()
    streamed = _stream(cfg, ensemble, params, ids, sample, out_path, save_probs, pseudo_labels, confidence, progress)
    return _summary(ensemble, streamed, time.perf_counter() - start, save_probs)
