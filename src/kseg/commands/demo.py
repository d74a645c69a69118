"""``kseg demo [--competition NAME] [--out DIR] [--fast] [key=value ...]``: write a miniature competition and
run the whole pipeline on it: folds -> train -> tune -> predict -> validate; prints the submission path.

``--competition demo`` (default) writes the synthetic Severstal-like competition to ``data.root``; any other
name (severstal, carvana, clouds, tgs-salt, isbi2012, streets, airplanes, uwmgi, contrails, hubmap) writes that
competition's miniature layout to ``input/<name>-mini`` and runs its shipped config (``kseg.demo.registry.MINIATURES``).
"""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path

from kseg.config import load_config
from kseg.data.rle import RleDialect
from kseg.layout import INPUT_DIR, submission_path
from kseg.tta import tta_names

log = logging.getLogger(__name__)

DEMO_CONFIG = "configs/demo.yaml"
COMPETITIONS = (
    "demo",
    "severstal",
    "carvana",
    "clouds",
    "tgs-salt",
    "isbi2012",
    "streets",
    "airplanes",
    "uwmgi",
    "contrails",
    "hubmap",
)
# also build and rehearse the kernel: hubmap tiles whole slides, uwmgi finds nested files by competition.image_path
# and stacks volume slices, contrails reads record folders of arrays (competition.arrays)
KERNEL_DEMOS = ("demo", "hubmap", "uwmgi", "contrails")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--competition",
        default="demo",
        metavar="NAME",
        help=f"competition to write and run: {', '.join(COMPETITIONS)} (default demo)",
    )
    p.add_argument(
        "-c",
        "--config",
        default=None,
        help=f"experiment (default: the competition's shipped config; {DEMO_CONFIG} for demo)",
    )
    p.add_argument(
        "--out", default="", help="where to write the competition (default: input/<name>-mini; data.root for demo)"
    )
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--n-train", type=int, default=None, help="training images (carvana: cars of 16 angles)")
    p.add_argument("--n-test", type=int, default=None, help="test images (carvana: cars)")
    p.add_argument("--small", action="store_true", help="the few-image version the end-to-end test runs")
    p.add_argument(
        "--fast",
        action="store_true",
        help="1-epoch CPU smoke run: tiny encoder, no pretrained weights, 2 folds, small input",
    )
    p.add_argument(
        "--tta",
        choices=tta_names(),
        default="hflip",
        help="TTA of the predict stage; the OOF is re-predicted with it and tuned on (none: training's OOF)",
    )
    p.add_argument(
        "--no-kernel",
        action="store_true",
        help=f"stop after validate (by default {', '.join(KERNEL_DEMOS)} also build and rehearse their kernel)",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every stage")


def config_path(args: argparse.Namespace, shipped: str) -> Path:
    """``-c`` if given, else the shipped config, relative to the working folder or the kseg checkout."""
    from kseg.demo.registry import shipped_path

    return Path(args.config) if args.config else shipped_path(shipped)


def stage_commands(
    config: Path, root: Path, overrides: list[str], tta: str, submission: Path, oof_tta: str = ""
) -> list[list[str]]:
    """The CLI argument lists of every stage, in pipeline order (``oof_tta``: the config's ``tune.oof_tta``).

    Post-processing is tuned on OOF predicted with the submission's ``tta`` (re-predicted with
    ``predict --oof`` unless ``none``), so ``kseg predict`` applies it to the ensemble it was tuned on.
    """
    common = ["-c", str(config)]
    ov = [f"data.root={root}", *overrides]
    want = "" if tta == "none" else tta
    oof = [["predict", *common, "--oof", "--tta", want, *ov]] if want else []
    tune_tta = [] if want == oof_tta else ["tune.oof_tta=" + (want or "''")]  # '' = training's OOF
    return [
        ["folds", *common, "--force", *ov],
        ["train", *common, "--fold", "all", *ov],
        *oof,
        ["tune", *common, *tune_tta, *ov],
        ["predict", *common, "--tta", tta, "--out", str(submission), *ov],
        ["validate", *common, str(submission), *ov],
    ]


def write_competition(
    args: argparse.Namespace, name: str, root: Path, cfg_size: tuple[int, int] | None, dialect: RleDialect
) -> None:
    """Write the demo or miniature competition ``name`` to ``root``, its csvs in the config's RLE ``dialect``."""
    from kseg.demo.registry import MINIATURES
    from kseg.demo.synthetic import make_demo

    mini = MINIATURES.get(name)
    kwargs = dict(mini.small) if args.small else {}
    if args.n_train is not None:
        kwargs["n_train"] = args.n_train
    if args.n_test is not None:
        kwargs["n_test"] = args.n_test
    if name == "demo":
        make_demo(root, seed=args.seed, size=cfg_size or (128, 256), encode=dialect.encode, **kwargs)
    else:
        mini.write(root, seed=args.seed, encode=dialect.encode, **kwargs)


def fit_folds(config: Path, root: Path, overrides: list[str], user: list[str], name: str) -> list[str]:
    """``overrides`` + ``data.n_folds=<n>`` when the miniature at ``root`` has only n < ``data.n_folds`` groups
    (or images) to split; a ``data.n_folds`` among the ``user``'s overrides is kept and fails here when too large."""
    from kseg.data.folds import fold_units

    cfg = load_config(config, [f"data.root={root}", *overrides])
    have, what = fold_units(cfg)
    want = cfg.data.n_folds
    if have >= want:
        return overrides
    if have < 2 or any(o.split("=", 1)[0].strip() == "data.n_folds" for o in user):
        fewer = f" or set data.n_folds to at most {have}" if have >= 2 else ""
        raise ValueError(
            f"data.n_folds={want}: the {name} miniature in {root} has only {have} {what} to split into "
            f"folds; write a bigger one with --n-train{fewer}"
        )
    log.info(
        "demo: the %s miniature has %d %s, fewer than data.n_folds=%d of %s: every stage runs with data.n_folds=%d",
        name,
        have,
        what,
        want,
        config,
        have,
    )
    return [*overrides, f"data.n_folds={have}"]


def run(args: argparse.Namespace) -> int:
    from kseg.commands import stages
    from kseg.demo.registry import MINIATURES

    name = args.competition
    if name not in MINIATURES:
        raise ValueError(f"--competition: {name!r} is not one of {', '.join(MINIATURES.names())}")
    mini = MINIATURES.get(name)
    config = config_path(args, mini.config)
    overrides = [*(mini.fast if args.fast else ()), *args.overrides]
    cfg = load_config(config, overrides)
    if args.out:
        root = Path(args.out)
    else:
        root = cfg.data_root if name == "demo" else Path(INPUT_DIR) / f"{name}-mini"
    write_competition(args, name, root, cfg.competition.image_size, cfg.competition.rle)
    print(f"{name} competition written to {root}")
    overrides = fit_folds(config, root, overrides, args.overrides, name)
    submission = submission_path(cfg.name)
    pipeline = stage_commands(config, root, overrides, args.tta, submission, cfg.tune.oof_tta)
    if name in KERNEL_DEMOS and not args.no_kernel:
        ov = [f"data.root={root}", *overrides]
        pipeline += [
            ["kernel", "build", "-c", str(config), "--tta", args.tta, *ov],
            ["kernel", "rehearse", "-c", str(config), *ov],
        ]
    for argv in pipeline:
        log.info("demo: %s", shlex.join(["kseg", *argv]))  # pastes into a shell as is
        rc = stages.run_stage(argv)
        if rc:
            log.error("demo: kseg %s failed with exit code %d", argv[0], rc)
            return rc
    print(f"submission: {submission}")
    return 0
