"""The kernel's commit-run smoke test: predict training images when the sample submission has no rows.

Kaggle fills an empty public ``sample_submission.csv`` (UW-Madison's) and the hidden test images only when it
scores the kernel, so the commit run predicts nothing and a broken model path shows up only as a scoring
error. The public UW-Madison inference notebooks predicted the first 1000 training slices in that case; the
kernel script does the same through this module::

    python -m kseg.kernel.smoke -c CONFIG --out smoke_submission.csv [kseg predict options] [key=value ...]

writes a sample submission of the first ``kernel.smoke_images`` training ids (empty masks, the sample's
header and format), then runs ``kseg predict`` and ``kseg validate`` on the training folder against it.
``submission.csv`` is left as it is (header only).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from kseg.atomic import atomic_write_text
from kseg.competition import CompetitionSpec, list_train_ids, read_csv
from kseg.config import Config, load_config

log = logging.getLogger("kseg.kernel.smoke")  # not __main__ under `python -m`

__all__ = ["sample_rows", "write_smoke_sample", "main"]


def sample_rows(spec: CompetitionSpec, columns: Sequence[str], ids: Sequence[str]) -> pd.DataFrame:
    """A sample submission with ``columns`` (the real sample's header) listing ``ids`` with empty masks:
    one row per id (``single``), else per id x class in class order. A column the format has no value
    for raises, naming it."""
    sub, empty = spec.submission, spec.rle.empty
    per_class = sub.format != "single"
    image = [i for i in ids for _ in (spec.labels if per_class else [0])]
    values: dict[str, list[str]] = {sub.rle_column: [empty] * len(image)}
    if sub.format == "long":
        values[sub.id_column] = image
        values[sub.class_column] = [c for _ in ids for c in spec.labels]
    elif per_class:
        values[sub.id_column] = [f"{i}{sub.separator}{c}" for i in ids for c in spec.labels]
    else:
        values[sub.id_column] = image
    unknown = [c for c in columns if c not in values]
    if unknown:
        raise ValueError(f"smoke sample: no value for column {unknown[0]!r} of the sample submission {list(columns)}")
    return pd.DataFrame({c: values[c] for c in columns})


def write_smoke_sample(cfg: Config, ids: Sequence[str], out: Path) -> Path:
    """``sample_rows`` of ``ids`` under the header of ``cfg``'s sample submission, written to ``out``."""
    spec = cfg.competition
    columns = list(read_csv(cfg.data_root / spec.sample_submission).columns)
    atomic_write_text(out, sample_rows(spec, columns, ids).to_csv(index=False))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Smoke-test ``kseg predict`` on training images; ``argv``: ``kseg predict``'s own arguments."""
    from kseg.commands import stages
    from kseg.commands.args import split_runs

    argv = list(sys.argv[1:] if argv is None else argv)
    args = stages.parse_args(stages.build_parser(), ["predict", *argv])
    overrides = split_runs(args)[1]
    cfg = load_config(args.config, overrides)
    spec = cfg.competition
    try:
        ids = list_train_ids(spec, cfg.data_root, cfg.kernel.smoke_images) if cfg.kernel.smoke_images else []
    except FileNotFoundError as e:  # no training data attached: nothing to smoke-test on, not a kernel failure
        log.warning("smoke test skipped: %s", e)
        return 0
    if not ids:
        log.warning("smoke test skipped: kernel.smoke_images=%d, no training ids", cfg.kernel.smoke_images)
        return 0
    sample = write_smoke_sample(cfg, ids, Path(tempfile.mkdtemp(prefix="kseg-smoke-")) / "sample_submission.csv")
    log.info("smoke test: predicting %d training images of %s against %s", len(ids), spec.train_images, sample)
    on_train = [f"competition.test_images={spec.train_images}", f"competition.sample_submission={sample}"]
    rc = stages.run_stage(["predict", *argv, *on_train])
    if rc == 0 and args.out:
        rc = stages.run_stage(["validate", "-c", args.config, args.out, *overrides, *on_train])
    return rc


if __name__ == "__main__":
    from kseg.cli import setup_logging

    setup_logging()
    raise SystemExit(main())
