"""Check a submission csv the way Kaggle would reject it, before a daily submission is spent.

``validate_submission(path, cfg)`` compares the file with the competition's ``sample_submission.csv``:
header, the set of (image, class) rows (missing and extra ones listed), duplicates, and every RLE via
``kseg.data.rle.validate_rle`` at the submission size (``competition.submission_size``, or the test
image's own size when that is None). Row numbers are file line numbers: the header is row 1.
For an exclusive competition (``competition.exclusive``; multiclass implies it) a pixel claimed by two
classes of one image is a problem too (``overlap_problems``); overlapping classes (Clouds) are not checked.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kseg.competition import CompetitionSpec, split_rows
from kseg.config import Config
from kseg.data.inputs import ImagePaths, input_size
from kseg.data.rle import decode, rle_area, validate_rle

log = logging.getLogger(__name__)

__all__ = ["ClassSummary", "ValidationReport", "overlap_problems", "validate_submission"]


@dataclass(frozen=True)
class ClassSummary:
    """Rows of one class: how many, how many empty, mean mask area of the non-empty ones (pixels)."""

    name: str
    rows: int
    empty: int
    mean_area: float

    @property
    def empty_share(self) -> float:
        return self.empty / self.rows if self.rows else float("nan")


@dataclass
class ValidationReport:
    """Problems (each naming its row) and a summary of a submission file."""

    path: Path
    problems: list[str] = field(default_factory=list)
    rows: int = 0
    classes: list[ClassSummary] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """Human-readable summary: rows, and per class the empty share and mean mask area."""
        lines = [f"{self.path}: {self.rows} rows, {'valid' if self.ok else f'{len(self.problems)} problems'}"]
        for c in self.classes:
            area = "-" if np.isnan(c.mean_area) else f"{c.mean_area:.1f}"
            lines.append(f"  {c.name:<16} rows {c.rows:>7}  empty {100 * c.empty_share:5.1f}%  mean area {area}")
        return "\n".join(lines)


def _read(path: Path, report: ValidationReport) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[]).fillna("")
    except pd.errors.EmptyDataError:
        report.problems.append(f"{path}: the file is empty (no header)")
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        report.problems.append(f"{path}: not a well-formed csv: {str(e).strip()}")
    return None


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), [])


def _row_label(spec: CompetitionSpec, image: str, cls: int) -> str:
    if spec.num_classes == 1:
        return f"image {image!r}"
    return f"image {image!r} class {spec.labels[cls]}"


class _SizeOf:
    """Submission (H, W) of a test image: the spec's submission_size or the image file's size (cached)."""

    def __init__(self, cfg: Config) -> None:
        self.spec = cfg.competition
        self.folder = cfg.data_root / self.spec.test_images
        self.paths = ImagePaths(self.spec, self.folder)
        self.cache: dict[str, tuple[int, int] | str] = {}

    def __call__(self, image: str) -> tuple[int, int] | str:
        """(H, W), or a problem message when the size cannot be known."""
        if self.spec.submission_size:
            return int(self.spec.submission_size[0]), int(self.spec.submission_size[1])
        if image not in self.cache:
            path = self.folder / self.spec.image_file(image)
            try:
                path = self.paths(image)
                self.cache[image] = input_size(self.spec, path)
            except (OSError, ValueError) as e:
                self.cache[image] = f"cannot check the RLE: size of test image {path} unknown ({e})"
        return self.cache[image]


def overlap_problems(
    spec: CompetitionSpec,
    ids: np.ndarray,
    cls: np.ndarray,
    rles: np.ndarray,
    areas: np.ndarray,
    size_of: Callable[[str], tuple[int, int] | str],
) -> list[str]:
    """One problem per image whose class masks share pixels (for exclusive competitions).

    Per csv row [N]: image id, class index, RLE string, area (pixels of a valid RLE, -1 when invalid).
    Only the first row of each (image, class) with a valid non-empty RLE counts. An image's k masks
    are decoded together (bool [k, H*W]); the pixels claimed more than once are counted, and the
    pairwise shared pixels of the classes come from one product over those pixels only.
    """
    rows = np.flatnonzero(np.asarray(areas) > 0)
    table = pd.DataFrame({"image": np.asarray(ids, dtype=object)[rows], "cls": np.asarray(cls)[rows], "row": rows})
    table = table.drop_duplicates(["image", "cls"])
    table = table[table["image"].map(table["image"].value_counts()) > 1]
    problems = []
    for image, group in table.groupby("image", sort=False):
        size = size_of(image)
        if isinstance(size, str):
            continue
        masks = np.stack([decode(rles[r], size, spec.rle).ravel() != 0 for r in group["row"]])
        shared = masks.sum(axis=0, dtype=np.int64) > 1
        if not shared.any():
            continue
        sub = masks[:, shared].astype(np.int64)
        pairs = sub @ sub.T  # [k, k] pixels shared by each pair of classes
        a, b = np.triu_indices(len(group), 1)
        cls_of, row_of = group["cls"].to_numpy(), group["row"].to_numpy() + 2
        listed = "; ".join(
            f"{spec.labels[cls_of[i]]} (row {row_of[i]}) and {spec.labels[cls_of[j]]} (row {row_of[j]}): {pairs[i, j]}"
            for i, j in zip(a, b, strict=True)
            if pairs[i, j] > 0
        )
        problems.append(
            f"image {image!r}: {int(shared.sum())} pixel(s) claimed by more than one class, but the classes of "
            f"{spec.name} are exclusive (competition.exclusive: each pixel in at most one class); shared "
            f"pixels by class pair: {listed}"
        )
    return problems


def _split_checked(
    spec: CompetitionSpec, path: Path, sample_path: Path, df: pd.DataFrame, report: ValidationReport
) -> tuple[np.ndarray, np.ndarray] | None:
    """Check the header against the sample's; (image id, class index) [N] of the rows, or None (with a
    problem) when the rows cannot be checked."""
    csv_spec = spec.submission
    header, expected = _header(path), _header(sample_path)
    if header != expected:
        report.problems.append(f"row 1 (header): expected {','.join(expected)!r}, got {','.join(header)!r}")
    needed = [csv_spec.id_column, csv_spec.rle_column] + ([csv_spec.class_column] if csv_spec.format == "long" else [])
    absent = [c for c in needed if c not in df.columns]
    if absent:
        report.problems.append(f"row 1 (header): missing column {absent[0]!r}; cannot check the rows")
        return None
    try:
        return split_rows(spec, csv_spec, df, str(path))
    except ValueError as e:
        report.problems.append(str(e))
        return None


def _key_problems(
    spec: CompetitionSpec, ids: np.ndarray, cls: np.ndarray, s_ids: np.ndarray, s_cls: np.ndarray, sample_name: str
) -> list[str]:
    """Duplicate rows, rows not in the sample submission and sample rows missing (ids / classes [N], [M])."""
    problems = []
    keys = pd.Series(ids).astype(str) + "\x00" + pd.Series(cls).astype(str)
    s_keys = pd.Series(s_ids).astype(str) + "\x00" + pd.Series(s_cls).astype(str)
    first_row = pd.Series(np.arange(len(keys)), index=keys)
    first_row = first_row[~first_row.index.duplicated()]
    for i in np.flatnonzero(keys.duplicated().to_numpy()):
        problems.append(
            f"row {i + 2}: duplicate of row {int(first_row[keys.iloc[i]]) + 2} ({_row_label(spec, ids[i], cls[i])})"
        )
    in_sample = keys.isin(set(s_keys)).to_numpy()
    for i in np.flatnonzero(~in_sample):
        problems.append(f"row {i + 2}: {_row_label(spec, ids[i], cls[i])} is not in the sample submission")
    present = set(keys)
    for j in np.flatnonzero(~s_keys.isin(present).to_numpy()):
        problems.append(f"missing row for {_row_label(spec, s_ids[j], s_cls[j])} (row {j + 2} of {sample_name})")
    return problems


def _rle_areas(
    spec: CompetitionSpec, ids: np.ndarray, cls: np.ndarray, rles: np.ndarray, size_of: _SizeOf, problems: list[str]
) -> np.ndarray:
    """Mask area of every row's RLE, int64 [N] (-1 where invalid; its problems appended to ``problems``)."""
    areas = np.full(len(rles), -1, dtype=np.int64)  # -1: invalid
    for i, rle in enumerate(rles):
        size = size_of(ids[i])
        if isinstance(size, str):
            problems.append(f"row {i + 2} ({_row_label(spec, ids[i], cls[i])}): {size}")
            continue
        rle_problems = validate_rle(rle, size, spec.rle)
        if rle_problems:
            where = f"row {i + 2} ({_row_label(spec, ids[i], cls[i])})"
            problems.extend(f"{where}: {problem}" for problem in rle_problems)
        else:
            areas[i] = rle_area(rle, spec.rle)
    return areas


def _class_summaries(spec: CompetitionSpec, cls: np.ndarray, areas: np.ndarray) -> list[ClassSummary]:
    """Per class: rows with a valid RLE, empty ones, mean non-empty area (class index, area [N])."""
    summaries = []
    for c, name in enumerate(spec.classes):
        sel = (cls == c) & (areas >= 0)
        a = areas[sel]
        nonempty = a[a > 0]
        summaries.append(
            ClassSummary(
                name=name,
                rows=int(sel.sum()),
                empty=int((a == 0).sum()),
                mean_area=float(nonempty.mean()) if nonempty.size else float("nan"),
            )
        )
    return summaries


def validate_submission(path: str | Path, cfg: Config) -> ValidationReport:
    """Check submission ``path`` against ``cfg``'s competition; every problem names its row."""
    path = Path(path)
    spec = cfg.competition
    report = ValidationReport(path)
    if not path.is_file():
        report.problems.append(f"{path}: file not found")
        return report
    sample_path = cfg.data_root / spec.sample_submission
    if not sample_path.is_file():
        raise FileNotFoundError(f"sample submission not found: {sample_path} (needed to validate {path})")
    sample = pd.read_csv(sample_path, dtype=str, keep_default_na=False, na_values=[])
    df = _read(path, report)
    if df is None:
        return report
    report.rows = len(df)
    rows = _split_checked(spec, path, sample_path, df, report)
    if rows is None:
        return report
    ids, cls = rows
    s_ids, s_cls = split_rows(spec, spec.submission, sample, str(sample_path))
    report.problems.extend(_key_problems(spec, ids, cls, s_ids, s_cls, sample_path.name))
    size_of = _SizeOf(cfg)
    rles = df[spec.submission.rle_column].astype(str).to_numpy(dtype=object)
    areas = _rle_areas(spec, ids, cls, rles, size_of, report.problems)
    if spec.exclusive:
        report.problems.extend(overlap_problems(spec, ids, cls, rles, areas, size_of))
    report.classes.extend(_class_summaries(spec, cls, areas))
    return report
