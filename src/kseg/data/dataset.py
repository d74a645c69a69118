"""Labels and the torch Dataset that yields (image, mask[C, H, W]) for a competition spec.

Folds (``folds.csv``, written and read) live in ``kseg.data.folds``.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from kseg.competition import read_csv, read_train_labels, split_rows
from kseg.config import Config
from kseg.data import geometry
from kseg.data.images import ImageReadError
from kseg.data.inputs import ImagePaths, InputReader, input_problem
from kseg.data.rle import RleDialect, decode

log = logging.getLogger(__name__)

PSEUDO = "pseudo"


# --------------------------------------------------------------------------- labels


def read_labels(cfg: Config, with_pseudo: bool = False) -> pd.DataFrame:
    """Training labels: ``image_id`` + one RLE column per class ('' = empty), one row per image.

    With ``with_pseudo`` and ``data.pseudo_labels`` set, the pseudo-labelled test images are appended
    with ``source = "pseudo"`` (their files live in the test image folder); real rows have ``source = "train"``.
    """
    spec = cfg.competition
    labels = read_train_labels(spec, cfg.data_root, missing_ok=cfg.data.on_bad_image == "skip")
    labels["source"] = "train"
    if with_pseudo and cfg.data.pseudo_labels:
        pseudo = read_pseudo_labels(cfg, Path(cfg.data.pseudo_labels))
        clash = set(pseudo.image_id) & set(labels.image_id)
        if clash:
            raise ValueError(f"{cfg.data.pseudo_labels}: image {sorted(clash)[0]!r} is also a training image")
        labels = pd.concat([labels, pseudo], ignore_index=True)
    return labels


def read_pseudo_labels(cfg: Config, path: Path) -> pd.DataFrame:
    """Pseudo-label csv in the competition's train csv format (spec.train), rows for test images."""
    spec = cfg.competition
    df = read_csv(path)
    ids, cls = split_rows(spec, spec.train, df, str(path))
    order = list(dict.fromkeys(ids.tolist()))
    table = pd.DataFrame({"image_id": order})
    pos = pd.Series(np.arange(len(order)), index=order)
    wide = np.full((len(order), spec.num_classes), "", dtype=object)
    wide[pos.loc[ids].to_numpy(), cls] = df[spec.train.rle_column].astype(str).to_numpy(dtype=object)
    for c, name in enumerate(spec.classes):
        table[name] = wide[:, c]
    table["source"] = PSEUDO
    return table


# --------------------------------------------------------------------------- transforms


def build_augment(cfg: Config) -> A.Compose:
    """Albumentations pipeline of ``data.augment`` (applied to image and masks together)."""
    steps = []
    for i, step in enumerate(cfg.data.augment):
        cls = getattr(A, step.name, None)
        if cls is None or not isinstance(cls, type) or not issubclass(cls, A.BasicTransform):
            names = [
                n for n in dir(A) if isinstance(getattr(A, n), type) and issubclass(getattr(A, n), A.BasicTransform)
            ]
            close = difflib.get_close_matches(step.name, names, n=5, cutoff=0.5)
            raise ValueError(
                f"data.augment[{i}].name: {step.name!r} is not an albumentations transform"
                + (f"; did you mean {', '.join(close)}?" if close else "")
                + f" (valid: the {len(names)} transform classes of albumentations {A.__version__})"
            )
        accepted = inspect.signature(cls.__init__).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
            unknown = sorted(set(step.params) - set(accepted))
            if unknown:  # albumentations 2 silently ignores unknown keyword arguments
                valid = ", ".join(n for n in accepted if n != "self")
                raise ValueError(
                    f"data.augment[{i}].params.{unknown[0]}: {step.name} has no parameter "
                    f"{unknown[0]!r}; valid: {valid}"
                )
        try:
            steps.append(cls(**step.params))
        except (TypeError, ValueError) as e:
            raise ValueError(f"data.augment[{i}] {step.name}{step.params}: {e}") from e
    return A.Compose(steps)


def to_tensor_image(image: np.ndarray) -> torch.Tensor:
    """[H, W, K] pixels -> tensor [K, H, W] of the same dtype (normalised on the device: ``kseg.data.pixels``)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def decode_masks(rles: Sequence[str], size: tuple[int, int], image_id: str, dialect: RleDialect) -> np.ndarray:
    """RLE per class in the competition's ``dialect`` -> uint8 [H, W, C].

    An RLE running past the image names the image id and size."""
    out = np.zeros((size[0], size[1], len(rles)), dtype=np.uint8)
    for c, rle in enumerate(rles):
        if rle:
            try:
                out[..., c] = decode(rle, size, dialect)
            except ValueError as e:
                if "past the image end" in str(e):
                    raise ValueError(
                        f"image {image_id!r} class {c}: mask does not fit the {size[0]}x{size[1]} image: {e}"
                    ) from e
                raise ValueError(f"image {image_id!r} class {c}: malformed RLE in the training labels: {e}") from e
    return out


# --------------------------------------------------------------------------- dataset


class SegDataset(Dataset):
    """Items: {"image": [K, h, w], "mask": uint8 [C, h, w] (with labels), "id": str, "size": [2]}.

    K = ``kseg.data.inputs.input_channels`` (3 for RGB images, the stacked slices or array channels).

    ``size`` is the original (H, W). Images are fitted to ``data.image_size`` (resize or pad), then the
    ``data.augment`` pipeline runs on image and masks together when ``train``. The image keeps the file's
    dtype (uint8/uint16; float32 for float files or ``data.pixels=float``, in [0, 1]), not normalised:
    ``kseg.data.pixels.model_input`` normalises the collated batch on the device.
    """

    def __init__(
        self,
        cfg: Config,
        image_ids: Sequence[str],
        labels: pd.DataFrame | None = None,
        train: bool = False,
        root: str | Path | None = None,
        image_dir: str | Path | None = None,
    ) -> None:
        self.cfg = cfg
        spec = cfg.competition
        root = Path(root) if root is not None else cfg.data_root
        self.train_dir = Path(image_dir) if image_dir is not None else root / spec.train_images
        self.test_dir = root / spec.test_images
        self.train = train
        self.augment = build_augment(cfg) if train else None
        self.ids = [str(i) for i in image_ids]
        escaping = [i for i in self.ids if Path(i).is_absolute() or ".." in Path(i).parts]
        if escaping:  # ids come from competition csvs: never let one point outside the image folder
            raise ValueError(
                f"image id {escaping[0]!r}: an id must name a file inside {self.train_dir} (no absolute path, no '..')"
            )
        self.rles: list[list[str]] | None = None
        self.sources: list[str] = ["train"] * len(self.ids)
        if labels is not None:
            table = labels.set_index("image_id")
            missing = [i for i in self.ids if i not in table.index]
            if missing:
                raise ValueError(f"image {missing[0]!r} has no row in the training labels")
            rows = table.loc[self.ids]
            self.rles = rows[list(spec.classes)].to_numpy(dtype=object).tolist()
            if "source" in rows:
                self.sources = rows["source"].tolist()
        self.skipped: list[str] = []
        self._check_files()
        self.reader = self._reader()

    def path(self, idx: int) -> Path:
        """The file (or record folder, ``competition.arrays``) of item ``idx``."""
        return self.paths[idx]

    def _resolve(self) -> list[Path]:
        spec = self.cfg.competition
        folders = {"train": ImagePaths(spec, self.train_dir), PSEUDO: ImagePaths(spec, self.test_dir)}
        out = []
        for image_id, source in zip(self.ids, self.sources, strict=True):
            try:
                out.append(folders[PSEUDO if source == PSEUDO else "train"](image_id))
            except FileNotFoundError:
                if self.cfg.data.on_bad_image != "skip":
                    raise
                out.append(folders["train"].folder / image_id)  # reported missing by _check_files
        return out

    def _check_files(self) -> None:
        """Missing or empty files: raise naming the file, or (data.on_bad_image=skip) drop and log them."""
        self.paths = self._resolve()
        keep = []
        for i in range(len(self.ids)):
            p = self.path(i)
            problem = input_problem(self.cfg.competition, p)
            if not problem:
                keep.append(i)
            elif self.cfg.data.on_bad_image == "skip":
                self.skipped.append(str(p))
                log.warning("skipping image %s: %s", p, problem)
            else:
                raise ImageReadError(f"image file {problem}: {p} (set data.on_bad_image=skip to skip such files)")
        if self.skipped:
            log.warning("skipped %d bad image file(s)", len(self.skipped))
            self._keep(keep)

    def _keep(self, keep: list[int]) -> None:
        self.ids = [self.ids[i] for i in keep]
        self.sources = [self.sources[i] for i in keep]
        self.paths = [self.paths[i] for i in keep]
        if self.rles is not None:
            self.rles = [self.rles[i] for i in keep]

    def drop_unreadable(self) -> list[str]:
        """Decode every image once and drop the unreadable ones (logged, added to ``skipped``); returns them.

        Used with ``data.on_bad_image=skip`` for validation sets, whose OOF rows must be known up front.
        """
        keep, bad = [], []
        for i in range(len(self.ids)):
            try:
                self.reader.check(i)
                keep.append(i)
            except (ImageReadError, FileNotFoundError) as e:
                bad.append(str(self.path(i)))
                log.warning("skipping unreadable image (data.on_bad_image=skip): %s", e)
        if bad:
            log.warning("skipped %d unreadable image file(s)", len(bad))
            self.skipped += bad
            self._keep(keep)
            self.reader = self._reader()
        return bad

    def _reader(self) -> InputReader:
        """The reader of the current ids: integer pixels with ``data.pixels=uint8``, JPEG drafts with
        ``data.jpeg_draft`` (only when images are resized: padding keeps every pixel)."""
        data = self.cfg.data
        draft = tuple(data.image_size) if data.jpeg_draft and data.resize == "resize" else None
        return InputReader(self.cfg.competition, self.ids, self.paths, integer=data.pixels == "uint8", draft=draft)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, idx: int) -> dict[str, Any] | None:
        try:
            image, size = self.reader.read(idx)  # size: the file's (H, W), also after a draft decode
        except (ImageReadError, FileNotFoundError) as e:
            if self.cfg.data.on_bad_image != "skip":
                raise
            log.warning("skipping unreadable image (data.on_bad_image=skip): %s", e)
            return None  # dropped by collate_skip_bad
        item: dict[str, Any] = {"id": self.ids[idx], "size": torch.tensor(size, dtype=torch.long)}
        image = geometry.fit_image(image, self.cfg)
        if self.rles is not None:
            native = self.cfg.competition.image_size
            if native is not None and tuple(size) != tuple(native):
                raise ValueError(
                    f"image {self.ids[idx]!r}: {self.path(idx)} is {size[0]}x{size[1]}, but its masks are "
                    f"encoded at competition.image_size {native[0]}x{native[1]}"
                )
            mask = geometry.fit_mask(
                decode_masks(self.rles[idx], size, self.ids[idx], self.cfg.competition.rle), self.cfg
            )
            if self.augment is not None:
                out = self.augment(image=image, mask=mask)
                image, mask = out["image"], out["mask"]
            # uint8 0/1 (a quarter of float32's bytes through the worker queues); the loop makes it float on the device
            item["mask"] = torch.from_numpy(np.ascontiguousarray(mask.transpose(2, 0, 1), dtype=np.uint8))
        elif self.augment is not None:
            image = self.augment(image=image)["image"]
        item["image"] = to_tensor_image(image)
        return item


def collate_skip_bad(items: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """default_collate over the items that loaded; unreadable ones (None, data.on_bad_image=skip) are
    dropped and counted in ``batch["skipped"]``. An all-bad batch collates to None."""
    good = [it for it in items if it is not None]
    if not good:
        return None
    batch = default_collate(good)
    batch["skipped"] = len(items) - len(good)
    return batch


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: numpy/random seeded from torch's per-worker seed."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset,
    cfg: Config,
    train: bool,
    generator: torch.Generator | None = None,
    sampler: Any = None,
    batch_size: int | None = None,
) -> DataLoader:
    """DataLoader with the config's batch size and workers, pinned memory on CUDA, seeded workers."""
    bs = batch_size or (cfg.data.batch_size if train else (cfg.data.val_batch_size or 2 * cfg.data.batch_size))
    workers = cfg.data.num_workers
    return DataLoader(
        dataset,
        batch_size=bs,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=train and len(dataset) > bs,
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker,
        generator=generator,
        collate_fn=collate_skip_bad if cfg.data.on_bad_image == "skip" else None,
    )
