"""``kseg predict``: fold/model ensemble with TTA on the test images -> validated submission csv.

    kseg predict -c CONFIG [--runs EXP ...] [--folds 0,1,2] [--tta none|hflip|vflip|hvflip|d4]
                 [--out PATH] [--save-probs DIR] [--pseudo-labels OUT.csv --confidence 0.9]
                 [--allow-postprocess-mismatch] [key=value ...]

``runs/<exp>/postprocess.json`` is refused when it was tuned on another ensemble (runs, folds or TTA)
than the one predicting, unless ``--allow-postprocess-mismatch``.
    kseg predict -c CONFIG --oof [--folds 0,1] [--tta hflip] [key=value ...]

``--oof`` re-predicts every fold's validation images with that fold's checkpoint and the TTA, writing
``runs/<exp>/fold<K>/oof_tta-<TTA>.npy`` (+ ids, + aux) for ``kseg tune tune.oof_tta=<TTA>``.
"""

from __future__ import annotations

import argparse
import logging

from kseg.commands.args import add_config_arguments, split_runs
from kseg.layout import BEST, LAST
from kseg.tta import tta_names

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument(
        "--runs",
        nargs="+",
        metavar="EXP",
        default=None,
        help="experiments to ensemble (runs/<EXP>/fold*/); default: the config's own",
    )
    p.add_argument(
        "--folds", default=None, help="comma-separated folds, e.g. 0,1,2 (default: predict.folds, else all found)"
    )
    p.add_argument("--tta", choices=tta_names(), default=None, help="test-time augmentation (default: predict.tta)")
    p.add_argument("--weights", default=BEST, help=f"checkpoint file inside each fold folder ({BEST} | {LAST})")
    p.add_argument("--out", default=None, help="submission path (default: submissions/<exp>-<YYYYmmdd-HHMMSS>.csv)")
    p.add_argument("--save-probs", default=None, metavar="DIR", help="also keep uint8 probabilities per image in DIR")
    p.add_argument(
        "--pseudo-labels",
        default=None,
        metavar="OUT.csv",
        help="also write confident test images as train-format labels",
    )
    p.add_argument(
        "--confidence",
        type=float,
        default=None,
        help="pixel confidence for pseudo-labels (default: predict.pseudo_confidence)",
    )
    p.add_argument(
        "--oof",
        action="store_true",
        help="re-predict each fold's validation images (OOF with TTA, for kseg tune tune.oof_tta=TTA)",
    )
    p.add_argument(
        "--allow-postprocess-mismatch",
        action="store_true",
        help="apply postprocess.json even when it was tuned on other runs, folds or TTA (default: refuse)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from kseg.config import load_config
    from kseg.infer.checkpoints import parse_folds
    from kseg.infer.pipeline import predict_submission
    from kseg.submission.validate import validate_submission

    given, overrides = split_runs(args)
    runs = given or []
    cfg = load_config(args.config, overrides)
    if args.oof:
        return _run_oof(args, cfg, runs)
    result = predict_submission(
        cfg,
        runs=runs,
        folds=parse_folds(args.folds),
        tta=args.tta,
        out=args.out,
        save_probs=args.save_probs,
        pseudo_labels=args.pseudo_labels,
        confidence=args.confidence,
        weights=args.weights,
        progress=not args.no_progress,
        allow_postprocess_mismatch=args.allow_postprocess_mismatch,
    )
    report = validate_submission(result.path, cfg)
    log.info("validation:\n%s", report.summary())
    shares = ", ".join(f"{c} {s:.0%}" for c, s in zip(cfg.competition.classes, result.empty_share, strict=True))
    print(
        f"predicted {result.images} images with {result.members} checkpoint(s) x {result.views} TTA view(s) "
        f"in {result.seconds:.1f}s; empty masks: {shares}"
    )
    if result.pseudo_path is not None:
        print(f"pseudo-labels: {result.pseudo_kept} of {result.images} images -> {result.pseudo_path}")
    if result.probs_dir is not None:
        print(f"probabilities: {result.probs_dir}")
    if not report.ok:
        for problem in report.problems:
            log.error("%s", problem)
        print(f"submission INVALID: {result.path}")
        return 1
    print(f"submission: {result.path}")
    return 0


def _run_oof(args: argparse.Namespace, cfg, runs: list[str]) -> int:
    from kseg.infer.checkpoints import parse_folds
    from kseg.infer.repredict_oof import predict_oof

    unused = [
        flag
        for flag, v in (
            ("--runs", runs),
            ("--out", args.out),
            ("--save-probs", args.save_probs),
            ("--pseudo-labels", args.pseudo_labels),
            ("--allow-postprocess-mismatch", args.allow_postprocess_mismatch),
        )
        if v
    ]
    if unused:
        raise ValueError(f"--oof predicts the config's own experiment only; drop {', '.join(unused)}")
    tta = args.tta or cfg.predict.tta
    done = predict_oof(cfg, parse_folds(args.folds), tta=tta, weights=args.weights, progress=not args.no_progress)
    for r in done:
        print(f"fold {r.fold}: {r.images} OOF images -> {r.path}" + (f" (+ {r.aux_path.name})" if r.aux_path else ""))
    print(f"tune on them with: kseg tune -c {args.config} tune.oof_tta={tta} ...")
    return 0
