"""``kseg kernel build|rehearse|push|status|submit|scores``: offline Kaggle inference kernels.

kseg kernel build    -c CONFIG [--runs EXP ...] [--folds 0,1] [--tta MODE] [--no-wheels]
                     [--allow-postprocess-mismatch] [--force] [key=value ...]
kseg kernel rehearse -c CONFIG [--isolation auto|unshare|guard] [--timeout S] [--keep] [key=value ...]
kseg kernel push     -c CONFIG [-m MSG] [--no-wait] [--no-output] [--poll S] [--timeout S] [key=value ...]
kseg kernel status   -c CONFIG [--wait] [--poll S] [--timeout S] [key=value ...]
kseg kernel submit   -c CONFIG -m MSG [--file CSV] [key=value ...]
kseg kernel scores   -c CONFIG [key=value ...]
"""

from __future__ import annotations

import argparse
import logging

from kseg.commands.args import add_config_arguments, split_runs
from kseg.config import load_config

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    b = sub.add_parser("build", help="write kernels/<exp>/{dataset,kernel}/ (checkpoints, configs, wheels, script)")
    add_config_arguments(b)
    b.add_argument(
        "--runs",
        nargs="+",
        metavar="EXP",
        default=None,
        help="experiments the kernel ensembles (default: the config's own)",
    )
    b.add_argument("--folds", default=None, help="comma-separated folds to ship (default: predict.folds, else all)")
    b.add_argument("--tta", default=None, help="TTA the kernel predicts with (default: predict.tta)")
    b.add_argument(
        "--no-wheels",
        action="store_true",
        help="ship only the kseg wheel (same as kernel.wheels=[]): the image must hold the rest",
    )
    b.add_argument("--user", default=None, help="Kaggle username (default: KAGGLE_USERNAME or kaggle.json)")
    b.add_argument(
        "--allow-postprocess-mismatch",
        action="store_true",
        help="ship postprocess.json even when it was tuned on other runs, folds or TTA (default: refuse)",
    )
    b.add_argument(
        "--force",
        action="store_true",
        help="build even when the estimated run time exceeds kernel.time_limit_hours (default: refuse)",
    )

    r = sub.add_parser("rehearse", help="run the built kernel locally, offline, as Kaggle would")
    add_config_arguments(r)
    r.add_argument(
        "--isolation",
        choices=("auto", "unshare", "guard"),
        default="auto",
        help="how the network is cut: unshare -n (auto when permitted) or a Python socket guard",
    )
    r.add_argument("--timeout", type=float, default=7200.0, help="seconds before the run is killed")
    r.add_argument("--keep", action="store_true", help="keep the temporary /kaggle-like folder")
    r.add_argument("--quiet", action="store_true", help="do not echo the kernel's output (it is in the log)")
    _kaggle_actions(sub)


def _kaggle_actions(sub: argparse._SubParsersAction) -> None:
    """push, status, submit and scores: the actions that drive the kaggle CLI."""
    u = sub.add_parser("push", help="upload dataset + kernel with the kaggle CLI, then follow the run")
    add_config_arguments(u)
    u.add_argument("-m", "--message", default="", help="dataset version notes (default: experiment + git commit)")
    u.add_argument("--no-wait", action="store_true", help="return after the push; follow with `kseg kernel status`")
    _poll_arguments(u)

    s = sub.add_parser("status", help="status of the last pushed kernel; fetches its log once it ended")
    add_config_arguments(s)
    s.add_argument("--wait", action="store_true", help="poll until the kernel completes or fails")
    _poll_arguments(s)

    m = sub.add_parser("submit", help="kaggle competitions submit: the pushed kernel (code competitions) or a csv")
    add_config_arguments(m)
    m.add_argument("-m", "--message", required=True, help="submission description")
    m.add_argument("--file", default=None, help="csv to submit (file competitions); default: the kernel version")

    c = sub.add_parser("scores", help="leaderboard scores of recorded submissions (kaggle competitions submissions)")
    add_config_arguments(c)


def _poll_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--poll", type=float, default=15.0, help="first polling interval in seconds (then x1.5, max 300)")
    p.add_argument("--timeout", type=float, default=10 * 3600.0, help="stop polling after this many seconds")
    p.add_argument("--no-output", action="store_true", help="do not download the kernel's log and output files")


def _build(args: argparse.Namespace, overrides: list[str], runs: list[str] | None) -> int:
    from kseg.infer.checkpoints import parse_folds
    from kseg.kernel.build import build_kernel, size_table
    from kseg.tta import TTA_MODES

    if args.tta is not None and args.tta not in TTA_MODES.names():
        raise ValueError(TTA_MODES.unknown(args.tta, "--tta"))
    cfg = load_config(args.config, overrides)
    result = build_kernel(
        cfg,
        runs=runs,
        folds=parse_folds(args.folds),
        tta=args.tta,
        wheels=() if args.no_wheels else None,
        user=args.user,
        allow_postprocess_mismatch=args.allow_postprocess_mismatch,
        force=args.force,
    )
    print(size_table(result.files))
    if result.estimate is not None:
        print(result.estimate.describe())
    print(f"dataset {result.names.dataset_id}: {result.dataset_dir}")
    print(f"kernel  {result.names.kernel_id}: {result.script}")
    print(f"built in {result.seconds:.1f}s; next: kseg kernel rehearse -c {args.config}")
    return 0


def _rehearse(args: argparse.Namespace, overrides: list[str]) -> int:
    from kseg.kernel.rehearse import rehearse

    cfg = load_config(args.config, overrides)
    result = rehearse(cfg, isolation=args.isolation, timeout=args.timeout, keep=args.keep, echo=not args.quiet)
    for warning in result.warnings:
        print(f"warning: {warning}")
    if result.passed:
        print(
            f"rehearsal PASSED in {result.seconds:.1f}s (network cut: {result.isolation}); "
            f"submission {result.submission}"
        )
        return 0
    for problem in result.problems[:20]:
        print(f"problem: {problem}")
    print(f"rehearsal FAILED after {result.seconds:.1f}s; log: {result.log_path}")
    return 1


def _print_kernel(record: dict) -> int:
    k = record["kernel"]
    print(f"kernel {k['id']} v{k.get('version')}: {k.get('status')}" + (f" ({k['url']})" if k.get("url") else ""))
    if k.get("failure_message"):
        print(f"failure: {k['failure_message']}")
    if k.get("log"):
        print(f"log: {k['log']}")
    return 1 if k.get("status") in ("error", "cancel_acknowledged") else 0


def _print_scores(cfg) -> int:
    from kseg.kernel.scores import refresh_scores

    for sub in refresh_scores(cfg):
        where = f"v{sub['kernel_version']}" if sub.get("kernel_version") is not None else (sub.get("file") or "csv")
        public, private = (sub.get(k) for k in ("public_score", "private_score"))
        print(
            f"{sub.get('at', '')}  {where}  {sub.get('status', 'not found')}  public "
            f"{'-' if public is None else public}  private {'-' if private is None else private}  {sub['message']!r}"
        )
    return 0


def run(args: argparse.Namespace) -> int:
    runs, overrides = split_runs(args)
    if args.action == "build":
        return _build(args, overrides, runs)
    if args.action == "rehearse":
        return _rehearse(args, overrides)

    from kseg.kernel.kaggle_cli import KaggleCLIError
    from kseg.kernel.push import Backoff, push, refresh_status, submit

    cfg = load_config(args.config, overrides)
    try:
        if args.action == "submit":
            print(submit(cfg, args.message, file=args.file))
            return 0
        if args.action == "scores":
            return _print_scores(cfg)
        backoff = Backoff(first=args.poll, timeout=args.timeout)
        if args.action == "push":
            record = push(cfg, args.message, wait=not args.no_wait, backoff=backoff, fetch=not args.no_output)
            d = record["dataset"]
            what = "created" if d["action"] == "create" else "new version"
            print(f"dataset {d['id']} v{d.get('version')} ({what}): {d.get('status')}")
        else:
            record = refresh_status(cfg, wait=args.wait, backoff=backoff, fetch=not args.no_output)
        return _print_kernel(record)
    except KaggleCLIError as e:
        log.error("%s", e)
        return 1
