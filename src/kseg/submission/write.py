"""Streaming csv writers for predicted masks: the submission (sample order) and train-format csvs.

``SubmissionWriter`` fills the RLE column of ``sample_submission.csv`` and keeps everything else of the
sample: header line (byte for byte), row order, the other columns' text, line endings. It works for every
``CsvSpec`` format (``single``, ``combined``, ``long`` in the sample's column order, ``image_label``)
because rows are matched through ``kseg.competition.split_rows`` as (image id, class index).

Rows are written as soon as every earlier sample row is filled, so when images arrive in sample order
(``list_test_ids`` order) nothing is buffered; rows of an image that is ahead are held as RLE strings
only (small) until the gap closes. The file appears atomically (temp file + fsync + rename) on ``close``.

``TrainCsvWriter`` writes masks in the competition's *train* csv format (``spec.train``), e.g. for
pseudo-labels (see ``kseg.infer.pseudo``): ``single`` -> ``id,rle``; ``combined`` / ``image_label`` ->
``<image><sep><label>,rle`` one row per image x class; ``long`` -> ``id,class,rle`` with only the non-empty
masks, plus one row with an empty RLE for the first class when all of an image's masks are empty (so the
image is still listed; ``kseg.data.dataset.read_pseudo_labels`` reads that as "no defect").
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import numpy as np
import pandas as pd

from kseg.atomic import AtomicFile
from kseg.competition import CompetitionSpec, read_csv, split_rows

log = logging.getLogger(__name__)

__all__ = ["SubmissionWriter", "TrainCsvWriter", "write_submission", "train_csv_header"]


def _read_header(path: Path) -> tuple[str, str]:
    """(header line without its line end, the line end used: '\\n' or '\\r\\n')."""
    with open(path, newline="") as f:
        line = f.readline()
    if line.endswith("\r\n"):
        return line[:-2], "\r\n"
    return line.rstrip("\n"), "\n"


_W = TypeVar("_W", bound="_CsvOutput")


class _CsvOutput:
    """Commit-or-abort protocol of the csv writers: ``close`` on success, ``abort`` on error (with-statement)."""

    _out: AtomicFile

    def close(self) -> Path:
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the temp file; nothing appears at the output path."""
        self._out.abort()

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class SubmissionWriter(_CsvOutput):
    """Fill ``sample_submission.csv``'s RLE column, one image at a time, in the sample's order and format.

    >>> with SubmissionWriter(spec, root / spec.sample_submission, "sub.csv") as w:  # doctest: +SKIP
    ...     for image_id, rles in predictions:  # rles: one RLE string per class, class-index order
    ...         w.add(image_id, rles)
    """

    def __init__(self, spec: CompetitionSpec, sample_path: str | Path, out_path: str | Path) -> None:
        self.spec = spec
        self.sample_path = Path(sample_path)
        csv_spec = spec.submission
        df = read_csv(self.sample_path)
        if csv_spec.rle_column not in df.columns:
            raise ValueError(
                f"{self.sample_path}: missing column {csv_spec.rle_column!r}; columns are {list(df.columns)}"
            )
        ids, cls = split_rows(spec, csv_spec, df, str(self.sample_path))
        key = pd.Series(ids).astype(str) + "\x00" + pd.Series(cls).astype(str)
        dup = key.duplicated().to_numpy()
        if dup.any():
            row = int(np.flatnonzero(dup)[0])
            raise ValueError(
                f"{self.sample_path}: row {row + 2}: image {ids[row]!r} class {spec.labels[cls[row]]} listed twice"
            )
        self._table = df.to_numpy(dtype=object)  # the sample's text, cell by cell
        self._rle_col = list(df.columns).index(csv_spec.rle_column)
        groups = pd.Series(np.arange(len(df))).groupby(pd.Series(ids), sort=False).indices
        self._rows: dict[str, np.ndarray] = {str(k): np.asarray(v) for k, v in groups.items()}
        self._cls = cls
        self._ids = ids
        self._rles: list[str | None] = [None] * len(df)
        self._added: set[str] = set()
        self._next = 0  # first row not written yet
        self._pending = 0  # rows filled but not written yet
        self.image_ids: list[str] = list(self._rows)  # in order of first appearance in the sample
        header, newline = _read_header(self.sample_path)
        self._out = AtomicFile(out_path, newline="")
        self._out.file.write(header + newline)
        self._csv = csv.writer(self._out.file, lineterminator=newline)
        self.buffered_max = 0  # most rows held back at once (0 when images arrive in sample order)

    @property
    def path(self) -> Path:
        return self._out.path

    def add(self, image_id: str, rles: Sequence[str]) -> None:
        """Set the masks of one image: ``rles[c]`` is the RLE of class index ``c`` (the dialect's empty token or '')."""
        rows = self._rows.get(str(image_id))
        if rows is None:
            raise ValueError(f"image {image_id!r} is not in {self.sample_path}")
        if image_id in self._added:
            raise ValueError(f"image {image_id!r} was added twice")
        if len(rles) != self.spec.num_classes:
            raise ValueError(f"image {image_id!r}: {len(rles)} masks for {self.spec.num_classes} classes")
        self._added.add(image_id)
        for r in rows.tolist():
            self._rles[r] = rles[self._cls[r]] or self.spec.rle.empty
        self._pending += len(rows)
        self._flush()

    def _flush(self) -> None:
        n = len(self._rles)
        while self._next < n and self._rles[self._next] is not None:
            row = list(self._table[self._next])
            row[self._rle_col] = self._rles[self._next]
            self._csv.writerow(row)
            self._rles[self._next] = ""  # written: keep no string around
            self._next += 1
            self._pending -= 1
        self.buffered_max = max(self.buffered_max, self._pending)

    @property
    def missing(self) -> list[str]:
        """Sample images not added yet, in sample order."""
        return [i for i in self.image_ids if i not in self._added]

    def close(self) -> Path:
        """Check every sample image was added, then move the file into place; returns its path."""
        missing = self.missing
        if missing:
            self.abort()
            shown = ", ".join(repr(m) for m in missing[:5])
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise ValueError(
                f"submission incomplete: {len(missing)} image(s) of the sample have no prediction: {shown}{more}"
            )
        path = self._out.commit()
        log.info("wrote %s (%d rows)", path, len(self._rles))
        return path


def write_submission(
    spec: CompetitionSpec,
    sample_path: str | Path,
    out_path: str | Path,
    items: Iterable[tuple[str, Sequence[str]]],
) -> Path:
    """Write ``(image_id, rles per class)`` items as a submission shaped like the sample; returns the path."""
    with SubmissionWriter(spec, sample_path, out_path) as w:
        for image_id, rles in items:
            w.add(image_id, rles)
    return w.path


def train_csv_header(spec: CompetitionSpec) -> list[str]:
    """Columns of a csv in the competition's train format."""
    t = spec.train
    if t.format == "long":
        return [t.id_column, t.class_column, t.rle_column]
    return [t.id_column, t.rle_column]


class TrainCsvWriter(_CsvOutput):
    """Stream masks into a csv in the competition's train format (``spec.train``), in arrival order."""

    def __init__(self, spec: CompetitionSpec, out_path: str | Path) -> None:
        self.spec = spec
        self._out = AtomicFile(out_path, newline="")
        self._csv = csv.writer(self._out.file, lineterminator="\n")
        self._csv.writerow(train_csv_header(spec))
        self.images = 0
        self.rows = 0

    @property
    def path(self) -> Path:
        return self._out.path

    def add(self, image_id: str, rles: Sequence[str]) -> None:
        """Write the masks of one image: ``rles[c]`` is the RLE of class index ``c`` ('' = empty)."""
        spec, t = self.spec, self.spec.train
        if len(rles) != spec.num_classes:
            raise ValueError(f"image {image_id!r}: {len(rles)} masks for {spec.num_classes} classes")
        empty = spec.rle.empty
        if t.format == "single":
            rows = [[image_id, rles[0] or empty]]
        elif t.format == "long":
            rows = [[image_id, spec.labels[c], r] for c, r in enumerate(rles) if not spec.rle.is_empty(r)]
            if not rows:
                rows = [[image_id, spec.labels[0], empty]]
        else:
            rows = [[f"{image_id}{t.separator}{spec.labels[c]}", r or empty] for c, r in enumerate(rles)]
        self._csv.writerows(rows)
        self.images += 1
        self.rows += len(rows)

    def close(self) -> Path:
        path = self._out.commit()
        log.info("wrote %s (%d images, %d rows)", path, self.images, self.rows)
        return path
