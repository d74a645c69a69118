"""``kseg ensemble -c CONFIG --runs A B [C ...] [--steps 20] [--grid thresholds|tune] [key=value ...]``.

Chooses member weights on the runs' OOF predictions (greedy forward selection with replacement), tunes the
post-processing of the weighted mean, and writes ``runs/<config's experiment>/ensemble.json`` (+ postprocess.json,
tune.csv, config.yaml), which ``kseg predict`` and ``kseg kernel build`` of the same config read. Prints each
member's own scores, the weights, the optimistic in-sample score and the cross-validated one.
"""

from __future__ import annotations

import argparse
import math

from kseg.commands.args import add_config_arguments, split_runs
from kseg.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kseg.tune.blend import SELECTION_GRIDS

    add_config_arguments(parser)
    parser.add_argument("--runs", nargs="+", required=True, metavar="EXP", help="the candidate experiments (2 or more)")
    parser.add_argument("--steps", type=int, default=20, help="greedy selection steps (default 20)")
    parser.add_argument(
        "--grid",
        choices=SELECTION_GRIDS,
        default="thresholds",
        help="post-processing tuned at every greedy step: tune.thresholds alone (default) or the whole tune grid",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the tune_<class>.png plots")


def _fmt(x: float) -> str:
    return "   n/a" if x is None or math.isnan(x) else f"{x:.4f}"


def run(args: argparse.Namespace) -> int:
    from kseg.tune.blend import select_ensemble, write_ensemble_outputs
    from kseg.tune.tracking import log_ensemble

    runs, overrides = split_runs(args)
    cfg = load_config(args.config, overrides)
    runs = runs or []
    if cfg.name in runs:
        raise ValueError(
            f"the ensemble's experiment {cfg.name!r} is one of --runs: its postprocess.json would be overwritten; "
            "give the ensemble its own name (name=<ensemble> or a config of its own)"
        )
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    result = select_ensemble(cfg, runs, steps=args.steps, grid=args.grid)
    paths = write_ensemble_outputs(cfg, result, args.steps, plots=not args.no_plots)
    log_ensemble(cfg, result, args.steps)  # wandb job_type=ensemble in the ensemble's group (wandb.mode)
    metric = cfg.competition.metric
    print(f"ensemble {cfg.name} of {len(runs)} runs on {sum(result.fold_images.values())} OOF images, {metric}")
    print(f"{'run':<40}{'weight':>8}{'default':>9}{'tuned':>8}{'cv':>8}")
    for r in runs:
        m = result.members[r]
        print(
            f"{r[:39]:<40}{result.weights[r]:>8.3f}{_fmt(m.score_default):>9}{_fmt(m.score_tuned):>8}{_fmt(m.score_cv):>8}"
        )
    f = result.final
    print(f"{'ensemble':<40}{1.0:>8.3f}{_fmt(f.score_default):>9}{_fmt(f.score_tuned):>8}{_fmt(result.score_cv):>8}")
    held = ", ".join(
        f"fold {k}: {_fmt(s)} ({' '.join(str(c) for c in result.splits[k].best_counts())})"
        for k, s in result.held_scores.items()
    )
    print(f"cross-validated per held fold (weights chosen without it as counts): {held}")
    print(
        f"CV score {_fmt(result.score_cv)} (weights + post-processing chosen on K-1 folds); optimistic in-sample "
        f"{_fmt(result.score_tuned)}; best member CV {_fmt(max(m.score_cv for m in result.members.values()))}"
    )
    print(f"wrote {paths['ensemble']} and {paths['postprocess']}")
    return 0
