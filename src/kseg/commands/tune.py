"""``kseg tune -c CONFIG [--runs EXP ...] [key=value ...]``: choose post-processing on OOF predictions.

Writes ``runs/<exp>/postprocess.json``, ``tune.csv`` and ``tune_<class>.png`` for the config's experiment;
with several ``--runs`` their OOF probabilities are averaged first (an ensemble's post-processing).
"""

from __future__ import annotations

import argparse
import math

from kseg.commands.args import add_config_arguments, split_runs
from kseg.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--runs",
        nargs="+",
        default=None,
        metavar="EXP",
        help="experiments whose OOF predictions are averaged (default: the config's own)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the tune_<class>.png plots")


def _fmt(x: float) -> str:
    return "  n/a " if math.isnan(x) else f"{x:.4f}"


def run(args: argparse.Namespace) -> int:
    from kseg.tune.report import selection_note, write_outputs
    from kseg.tune.run import tune
    from kseg.tune.tracking import log_tune

    runs, overrides = split_runs(args)
    cfg = load_config(args.config, overrides)
    result = tune(cfg, runs or None)
    paths = write_outputs(cfg, result, plots=not args.no_plots)
    log_tune(cfg, result)  # wandb job_type=tune in the experiment's group (wandb.mode)
    print(
        f"tuned {', '.join(result.runs)} on {result.n_images} OOF images ({len(result.folds)} folds), "
        f"metric {result.metric}"
    )
    print(
        f"{'class':<14}{'thr':>6}{'min_size':>9}{'min_area':>9}{'gate':>6}{'aux':>6}{'top':>6}"
        f"{'default':>9}{'tuned':>8}{'cv':>8}"
    )
    for name, p, ch in zip(result.classes, result.params, result.choices, strict=True):
        top = "-" if p.top_threshold is None else f"{p.top_threshold:g}"
        print(
            f"{name[:13]:<14}{p.threshold:>6g}{p.min_size:>9d}{p.min_area:>9d}{p.max_prob_gate:>6g}"
            f"{p.aux_gate:>6g}{top:>6}{_fmt(ch.score_default):>9}{_fmt(ch.score_tuned):>8}{_fmt(ch.score_cv):>8}"
        )
    print(f"{'mean':<60}{_fmt(result.score_default):>9}{_fmt(result.score_tuned):>8}{_fmt(result.score_cv):>8}")
    print(
        f"CV score {_fmt(result.score_cv)} (default {_fmt(result.score_default)}, "
        f"optimistic {_fmt(result.score_tuned)})"
    )
    print(f"note: {selection_note(result.selection)}")
    print(f"wrote {paths['postprocess']}")
    return 0
