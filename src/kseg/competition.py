"""Competition specs: how a Kaggle competition lays out its files, classes and metric.

A new competition is a YAML file in ``configs/competitions/`` parsed into ``CompetitionSpec``;
this module turns its csv files into one table: one row per image, one RLE column per class.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from kseg.data.inputs import ArrayInputs, read_label
from kseg.data.rle import RleDialect, rle_syntax_problems, union
from kseg.data.volumes import VolumeSpec
from kseg.metrics.registry import METRIC_REGISTRY, Metric, build_metric
from kseg.typed import ConfigError, choice

log = logging.getLogger(__name__)

CsvFormat = Literal["single", "combined", "long", "image_label"]
"""How masks are stored in a csv.

- ``single``: one row per image, one RLE column (1 class): TGS ``id,rle_mask``, Carvana ``img,rle_mask``.
- ``combined``: one row per image x class, id column ``<image>_<class>`` (old Severstal ``ImageId_ClassId``).
- ``long``: ``ImageId,ClassId,EncodedPixels`` (only non-empty rows in train csvs: images come from the folder).
- ``image_label``: like ``combined`` but the class is a label name (Clouds ``Image_Label`` = ``<file>_Fish``).
"""


@dataclass(frozen=True)
class CsvSpec:
    """Columns of a mask csv (training labels or submission)."""

    format: CsvFormat = "single"
    id_column: str = "ImageId"
    rle_column: str = "EncodedPixels"
    class_column: str = "ClassId"
    separator: str = "_"  # between image and class in ``combined`` / ``image_label`` ids
    instances: bool = False  # several rows per image x class, one per object (SIIM, Airbus): united on read


@dataclass(frozen=True)
class CompetitionSpec:
    """Everything kseg needs to know about a competition's files (paths relative to ``data.root``)."""

    name: str
    classes: tuple[str, ...]
    kaggle: str = ""  # competition slug for the kaggle CLI
    mode: Literal["binary", "multilabel", "multiclass"] = "binary"
    metric: str = choice("kseg.metrics:METRIC_REGISTRY", "dice")  # see kseg.metrics.registry
    metric_params: dict[str, Any] = field(default_factory=dict)  # the metric's parameters (beta, class_weights ...)
    train_csv: str = "train.csv"
    train_images: str = "train_images"
    test_images: str = "test_images"
    sample_submission: str = "sample_submission.csv"
    image_ext: str = ".png"
    ids_have_ext: bool = False  # csv ids include the file extension (``0002cc93b.jpg``)
    class_labels: tuple[str, ...] = ()  # how classes appear in csvs (default: 1..C for long/combined)
    image_size: tuple[int, int] | None = None  # native (H, W); None when sizes vary
    submission_size: tuple[int, int] | None = None  # (H, W) RLEs are encoded at; None = native
    oof_size: tuple[int, int] | None = None  # (H, W) OOF is stored + tuned at when sizes vary; None = submission's
    train: CsvSpec = field(default_factory=CsvSpec)
    submission: CsvSpec = field(default_factory=CsvSpec)
    group_pattern: str = ""  # regex; group(1) of the image id = group kept in one fold (Carvana car id)
    exclusive: bool = False  # each pixel in at most one class (argmax post-processing, validate); multiclass implies it
    rle: RleDialect = field(default_factory=RleDialect)  # pixel order, starts, empty token of every csv
    volume: VolumeSpec | None = None  # images are slices of 3D cases (id -> case, slice; 2.5D stacking)
    image_path: str = ""  # template of an id's file in the image folder ({id}, volume groups, glob); '' = image_file
    arrays: ArrayInputs | None = None  # each id is a folder of .npy arrays combined into channels (kseg.data.inputs)

    def __post_init__(self) -> None:
        if self.mode == "multiclass" and not self.exclusive:
            object.__setattr__(self, "exclusive", True)  # softmax over background + classes: exclusive
        if not self.classes:
            raise ConfigError(f"competition.classes: {self.name} needs at least one class")
        if self.class_labels and len(self.class_labels) != len(self.classes):
            raise ConfigError(
                f"competition.class_labels: {len(self.class_labels)} labels for "
                f"{len(self.classes)} classes {list(self.classes)}"
            )
        if self.mode == "binary" and len(self.classes) != 1:
            raise ConfigError(f"competition.mode: binary needs exactly 1 class, got {list(self.classes)}")
        for which, csv in (("train", self.train), ("submission", self.submission)):
            if csv.format == "single" and len(self.classes) != 1:
                raise ConfigError(
                    f"competition.{which}.format: 'single' holds one class, "
                    f"but there are {len(self.classes)}; use combined, long or image_label"
                )
        self._check_metric()
        if self.group_pattern:
            try:
                re.compile(self.group_pattern)
            except re.error as e:
                raise ConfigError(f"competition.group_pattern: {self.group_pattern!r}: {e}") from e

    def _check_metric(self) -> None:
        if self.metric not in METRIC_REGISTRY:
            raise ConfigError(METRIC_REGISTRY.unknown(self.metric, "competition.metric"))
        scorer = build_metric(self.metric, self.metric_params, self.num_classes)
        if scorer.kind == "volume" and self.volume is None:
            raise ConfigError(
                f"competition.metric: {self.metric} scores 3D volumes per case, but competition.volume is not set; "
                "add volume: {pattern: ...} with named groups case and slice (e.g. "
                "'(?P<case>case\\d+_day\\d+)_slice_(?P<slice>\\d+)')"
            )

    @property
    def scorer(self) -> Metric:
        """The competition's metric (``metric`` + ``metric_params``) as a ``kseg.metrics.Metric``."""
        return build_metric(self.metric, self.metric_params, self.num_classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> tuple[str, ...]:
        """Class labels as written in csvs."""
        if self.class_labels:
            return self.class_labels
        return tuple(str(i + 1) for i in range(self.num_classes))

    def image_file(self, image_id: str) -> str:
        """File name of an image id."""
        return image_id if self.ids_have_ext else image_id + self.image_ext

    def image_id(self, file_name: str) -> str:
        """Image id of a file name (inverse of ``image_file``)."""
        if self.ids_have_ext:
            return file_name
        ext = self.image_ext
        return file_name[: -len(ext)] if ext and file_name.endswith(ext) else file_name  # "" = a folder (arrays)

    def volume_keys(self, ids: Sequence[str] | pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(case str [N], slice index int [N]) of image ids under ``volume.pattern``; raises without ``volume``."""
        if self.volume is None:
            raise ValueError(f"competition {self.name}: no competition.volume, so image ids have no case / slice")
        return self.volume.keys(ids)

    def group_of(self, ids: pd.Series) -> pd.Series | None:
        """Group key per image id (kept in one fold): ``group_pattern``'s group(1), else the volume's case.

        None without either. With both, every case must lie in one group (a group holds whole cases).
        """
        if not self.group_pattern and self.volume is None:
            return None
        if not self.group_pattern:
            return pd.Series(self.volume_keys(ids)[0], index=ids.index, dtype=object)
        groups = ids.astype(str).str.extract(self.group_pattern, expand=False)
        if isinstance(groups, pd.DataFrame):
            groups = groups.iloc[:, 0]
        bad = groups.isna()
        if bad.any():
            raise ValueError(
                f"competition.group_pattern {self.group_pattern!r} does not match image id {ids[bad].iloc[0]!r}"
            )
        if self.volume is not None:
            case = pd.Series(self.volume_keys(ids)[0], index=ids.index)
            split = groups.groupby(case).nunique()
            if (split > 1).any():
                raise ValueError(
                    f"competition.group_pattern {self.group_pattern!r} splits case {split.index[split > 1][0]!r} "
                    "of competition.volume between groups; a group must hold whole cases"
                )
        return groups


def _class_index(spec: CompetitionSpec, labels: pd.Series, where: str) -> np.ndarray:
    """Map csv class labels to 0-based class indices; unknown labels raise naming the row."""
    lookup = {lab: i for i, lab in enumerate(spec.labels)}
    as_str = labels.astype(str).str.strip()
    as_str = as_str.str.replace(r"\.0$", "", regex=True)  # 1.0 -> 1 when pandas read floats
    idx = as_str.map(lookup)
    bad = idx.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{where}: row {row + 2}: class {labels.iloc[row]!r} is not one of {list(spec.labels)}")
    return idx.to_numpy(dtype=np.int64)


def split_rows(spec: CompetitionSpec, csv: CsvSpec, df: pd.DataFrame, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(image_id, class_index) of every row of a mask csv in ``csv`` format. Shapes [N], [N]."""
    need = [csv.id_column] + ([csv.class_column] if csv.format == "long" else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column {missing[0]!r}; columns are {list(df.columns)}")
    ids = df[csv.id_column].astype(str)
    if csv.format == "single":
        return ids.to_numpy(dtype=object), np.zeros(len(df), dtype=np.int64)
    if csv.format == "long":
        return ids.to_numpy(dtype=object), _class_index(spec, df[csv.class_column], where)
    parts = ids.str.rsplit(csv.separator, n=1, expand=True)
    if parts.shape[1] != 2 or parts[1].isna().any():
        row = int(np.flatnonzero(parts.get(1, pd.Series([None] * len(df))).isna().to_numpy())[0])
        raise ValueError(
            f"{where}: row {row + 2}: {csv.id_column} {ids.iloc[row]!r} is not '<image>{csv.separator}<class>'"
        )
    return parts[0].to_numpy(dtype=object), _class_index(spec, parts[1], where)


def read_csv(path: Path) -> pd.DataFrame:
    """Read a Kaggle csv keeping ids as strings and empty RLEs as ''."""
    if not path.is_file():
        raise FileNotFoundError(f"csv not found: {path}")
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])


def _checked_rles(spec: CompetitionSpec, column: pd.Series, ids: np.ndarray, cls: np.ndarray, path: Path) -> np.ndarray:
    """RLE strings [N] of a train csv column, stripped, each checked in the spec's dialect; empty -> ''.

    A string that is not legal in ``spec.rle`` raises naming the csv row, the image, the class and the dialect.
    """
    rles = column.fillna("").astype(str).str.strip().to_numpy(dtype=object)
    dialect = spec.rle
    for i, rle in enumerate(rles):
        if dialect.is_empty(rle):
            rles[i] = ""
            continue
        problems = rle_syntax_problems(rle, dialect)
        if problems:
            raise ValueError(
                f"{path}: row {i + 2}: image {ids[i]!r} class {spec.classes[cls[i]]}: "
                f"malformed RLE in the training labels: {problems[0]}"
            )
    return rles


def _unite_instances(
    spec: CompetitionSpec, key: pd.Series, ids: np.ndarray, cls: np.ndarray, rles: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of one image x class (one per object instance) -> one row with the union of their masks."""
    groups = pd.Series(rles, dtype=object).groupby(key.to_numpy(), sort=False)
    first = groups.head(1).index.to_numpy()  # first row of each image x class, in csv order
    united = [r.iloc[0] if len(r) == 1 else union([x for x in r if x], spec.rle) for _, r in groups]
    united = np.array(["" if r == spec.rle.empty else r for r in united], dtype=object)
    return ids[first], cls[first], united


def _wide_table(
    spec: CompetitionSpec, order: list[str], ids: np.ndarray, cls: np.ndarray, rles: np.ndarray
) -> pd.DataFrame:
    """``image_id`` + one RLE column per class ('' = empty) of rows (id, class index, RLE) [N]."""
    table = pd.DataFrame({"image_id": order})
    pos = pd.Series(np.arange(len(order)), index=order)
    wide = np.full((len(order), spec.num_classes), "", dtype=object)
    wide[pos.loc[ids].to_numpy(), cls] = rles
    for c, name in enumerate(spec.classes):
        table[name] = wide[:, c]
    return table


def read_array_labels(spec: CompetitionSpec, root: str | Path) -> pd.DataFrame:
    """Labels of ``arrays.label`` masks (one ``.npy`` per record folder of ``train_images``) as RLEs in ``spec.rle``.

    Records are the sub-folders, sorted by name; the table has the same columns as ``read_train_labels``.
    """
    assert spec.arrays is not None
    folder = Path(root) / spec.train_images
    if not folder.is_dir():
        raise FileNotFoundError(f"train record folder not found: {folder}")
    records = sorted(p.name for p in folder.iterdir() if p.is_dir())
    rles = [
        [
            spec.rle.encode(m) if m.any() else ""
            for m in read_label(spec.arrays, folder / r, spec.num_classes).transpose(2, 0, 1)
        ]
        for r in records
    ]
    table = pd.DataFrame({"image_id": records})
    for c, name in enumerate(spec.classes):
        table[name] = [r[c] for r in rles]
    return table


def read_train_labels(spec: CompetitionSpec, root: str | Path, missing_ok: bool = False) -> pd.DataFrame:
    """One row per training image: column ``image_id`` then one RLE column per class ('' = empty).

    Images without rows in a ``long`` csv (only non-empty masks are listed) come from the image folder;
    an image with a mask but no file is an error unless ``missing_ok`` (data.on_bad_image=skip: kept,
    so the dataset skips it by name).
    """
    root = Path(root)
    if spec.arrays is not None and spec.arrays.label:
        return read_array_labels(spec, root)
    path = root / spec.train_csv
    df = read_csv(path)
    csv = spec.train
    if csv.rle_column not in df.columns:
        raise ValueError(f"{path}: missing column {csv.rle_column!r}; columns are {list(df.columns)}")
    ids, cls = split_rows(spec, csv, df, str(path))
    rles = _checked_rles(spec, df[csv.rle_column], ids, cls, path)
    key = pd.Series(ids).astype(str) + "\x00" + pd.Series(cls).astype(str)
    dup = key.duplicated()
    if dup.any() and csv.instances:
        ids, cls, rles = _unite_instances(spec, key, ids, cls, rles)
    elif dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(
            f"{path}: row {row + 2}: duplicate mask for image {ids[row]!r} class {spec.classes[cls[row]]}"
            f" (one row per object instance? set competition.train.instances: true)"
        )
    order = list(dict.fromkeys(ids.tolist()))
    if csv.format == "long" and not spec.image_path:  # with image_path the csv lists every image (UW-Madison)
        img_dir = root / spec.train_images
        if not img_dir.is_dir():
            raise FileNotFoundError(f"train image folder not found: {img_dir}")
        listed = sorted(spec.image_id(p.name) for p in img_dir.iterdir() if p.name.endswith(spec.image_ext))
        in_csv = set(order)
        unknown = [i for i in order if i not in set(listed)]
        if unknown and not missing_ok:
            raise ValueError(f"{path}: image {unknown[0]!r} has a mask but no file in {img_dir}")
        order = listed + unknown
        del in_csv
    return _wide_table(spec, order, ids, cls, rles)


def list_test_ids(spec: CompetitionSpec, root: str | Path) -> list[str]:
    """Test image ids in sample-submission order (first appearance), else from the test folder."""
    root = Path(root)
    sample = root / spec.sample_submission
    if sample.is_file():
        ids, _ = split_rows(spec, spec.submission, read_csv(sample), str(sample))
        if not len(ids):  # UW-Madison's public sample was empty: Kaggle fills it when the kernel is scored
            log.warning("%s has no rows: there are no test images to predict", sample)
        return list(dict.fromkeys(ids.tolist()))
    img_dir = root / spec.test_images
    if not img_dir.is_dir():
        raise FileNotFoundError(f"neither {sample} nor test image folder {img_dir} exists")
    if spec.arrays is not None:
        return sorted(p.name for p in img_dir.iterdir() if p.is_dir())
    if spec.image_path:
        raise FileNotFoundError(f"{sample} not found: with competition.image_path the test ids come from it")
    return sorted(spec.image_id(p.name) for p in img_dir.iterdir() if p.name.endswith(spec.image_ext))


def list_train_ids(spec: CompetitionSpec, root: str | Path, limit: int | None = None) -> list[str]:
    """The first ``limit`` (None: all) training image ids: record folders of ``train_images`` with
    ``competition.arrays`` (no label is read), else ``read_train_labels`` order."""
    root = Path(root)
    if spec.arrays is not None:
        folder = root / spec.train_images
        if not folder.is_dir():
            raise FileNotFoundError(f"training folder not found: {folder}")
        return sorted(p.name for p in folder.iterdir() if p.is_dir())[:limit]
    return read_train_labels(spec, root, missing_ok=True)["image_id"].head(limit).tolist()
