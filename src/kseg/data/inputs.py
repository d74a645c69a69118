"""Model inputs beyond one image file per id: image paths from a template, 2.5D slice stacks, per-record arrays.

- ``competition.image_path`` (a template, glob wildcards allowed) maps an id to its file inside the image
  folder: ``{id}`` and the named groups of ``competition.volume.pattern`` fill it (UW-Madison:
  ``{patient}/{case}/scans/slice_{slice}_*.png``, the file name ending in the scan's size and spacing).
- ``competition.volume``: the input of a slice is its ``2 * context + 1`` neighbours stacked as channels
  (``kseg.data.volumes``), read lazily per item (the neighbours' rows, never a copy of the volume).
- ``competition.arrays`` (``ArrayInputs``): an id is a folder of ``.npy`` arrays (Contrails:
  ``band_08.npy`` ... ``band_16.npy``, each [H, W, T]), combined into channels by a named transform of
  ``TRANSFORMS`` at the chosen frames; the label may be an ``.npy`` mask in the same folder.

Every reader returns float32 [H, W, K] (plain images with ``integer``: [H, W, 3] in the file's uint8/uint16,
normalised later on the device by ``kseg.data.pixels.model_input``); ``input_channels(spec)`` is K, the
model's ``in_channels``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kseg.data.images import ImageReadError, image_size, read_image, read_pixels, read_pixels_draft, unit_float
from kseg.data.volumes import neighbour_index
from kseg.registry import Registry
from kseg.typed import ConfigError, choice

if TYPE_CHECKING:
    from kseg.competition import CompetitionSpec

__all__ = ["TRANSFORMS", "ArrayInputs", "ImagePaths", "InputReader", "input_channels", "input_size"]


# --------------------------------------------------------------------------- array transforms


@dataclass(frozen=True)
class ArrayTransform:
    """``fn(arrays [F] of [H, W, T'], names [F]) -> [H, W, K]`` and K for F files x T' frames."""

    fn: Callable[[list[np.ndarray], Sequence[str]], np.ndarray]
    channels: Callable[[int, int], int]
    needs: tuple[str, ...] = ()  # file names the transform reads, in this order


def _unit(x: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((x - low) / (high - low), 0.0, 1.0)


ASH_BOUNDS = {"tdiff": (-4.0, 2.0), "cloud_top_tdiff": (-4.0, 5.0), "t11": (243.0, 303.0)}  # kelvin


def ash(arrays: list[np.ndarray], names: Sequence[str]) -> np.ndarray:
    """False-colour "ash" RGB of (band_11, band_14, band_15) [H, W, T'] -> [H, W, 3 T'] in [0, 1].

    R = band15 - band14 in [-4, 2] K, G = band14 - band11 in [-4, 5] K, B = band14 in [243, 303] K, each
    scaled to [0, 1] and clipped (the Contrails organisers' "visualizing contrails" recipe); frames
    follow each other, R G B per frame.
    """
    b11, b14, b15 = arrays
    rgb = np.stack(
        [_unit(b15 - b14, *ASH_BOUNDS["tdiff"]), _unit(b14 - b11, *ASH_BOUNDS["cloud_top_tdiff"])]
        + [_unit(b14, *ASH_BOUNDS["t11"])],
        axis=-1,
    )  # [H, W, T', 3]
    return rgb.reshape(rgb.shape[0], rgb.shape[1], -1).astype(np.float32, copy=False)


def stack(arrays: list[np.ndarray], names: Sequence[str]) -> np.ndarray:
    """Every file's frames as channels, file by file: [H, W, F T'] float32 (raw values, e.g. kelvin)."""
    return np.concatenate(arrays, axis=-1).astype(np.float32, copy=False)


TRANSFORMS: Registry[ArrayTransform] = Registry("array transform")
TRANSFORMS.register("ash", ArrayTransform(ash, lambda f, t: 3 * t, ("band_11.npy", "band_14.npy", "band_15.npy")))
TRANSFORMS.register("stack", ArrayTransform(stack, lambda f, t: f * t))


@dataclass(frozen=True)
class ArrayInputs:
    """``arrays: {files: [band_11.npy, band_14.npy, band_15.npy], transform: ash, labelled_frame: 4,
    frames: [0], label: human_pixel_masks.npy}``.

    Each id is a folder (``<image folder>/<id>/``) holding ``files``, each [H, W, T] (T frames). ``frames``
    are offsets from ``labelled_frame`` (the frame the label is drawn on): ``[0]`` = that frame only,
    ``[-2, -1, 0]`` = it and the two before. ``label``: an ``.npy`` mask [H, W] or [H, W, C] (> 0 = class)
    in the folder instead of a train csv.
    """

    files: tuple[str, ...]
    transform: str = choice("kseg.data.inputs:TRANSFORMS", "stack")
    labelled_frame: int = 0
    frames: tuple[int, ...] = (0,)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.files:
            raise ConfigError("competition.arrays.files: at least one file per record")
        if not self.frames:
            raise ConfigError("competition.arrays.frames: at least one frame offset (0 = the labelled frame)")
        needs = TRANSFORMS.get(self.transform).needs if self.transform in TRANSFORMS else ()
        if needs and tuple(self.files) != needs:
            raise ConfigError(
                f"competition.arrays.files: transform {self.transform} reads {list(needs)} in that order, "
                f"got {list(self.files)}"
            )

    @property
    def channels(self) -> int:
        return TRANSFORMS.get(self.transform).channels(len(self.files), len(self.frames))


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"array file not found: {path}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable .npy array ({e})") from e


def read_arrays(arrays: ArrayInputs, record: Path) -> np.ndarray:
    """float32 [H, W, K] input of one record folder: ``arrays.frames`` of each file, then the transform."""
    picked = []
    for name in arrays.files:
        a = _load(record / name)
        if a.ndim != 3:
            raise ImageReadError(f"{record / name}: expected an H x W x T array, got shape {a.shape}")
        index = [arrays.labelled_frame + f for f in arrays.frames]
        if min(index) < 0 or max(index) >= a.shape[2]:
            raise ImageReadError(
                f"{record / name}: frames {index} (labelled_frame {arrays.labelled_frame} + frames "
                f"{list(arrays.frames)}) are outside its {a.shape[2]} frames"
            )
        picked.append(np.asarray(a[:, :, index], dtype=np.float32))
    return TRANSFORMS.get(arrays.transform).fn(picked, arrays.files)


def read_label(arrays: ArrayInputs, record: Path, classes: int) -> np.ndarray:
    """uint8 [H, W, C] 0/1 mask of a record's ``arrays.label`` file ([H, W] or [H, W, C], > 0 = class)."""
    mask = np.asarray(_load(record / arrays.label))
    if mask.ndim == 2:
        mask = mask[..., None]
    if mask.ndim != 3 or mask.shape[2] != classes:
        raise ValueError(f"{record / arrays.label}: expected an H x W x {classes} mask, got shape {mask.shape}")
    return (mask > 0).view(np.uint8) if mask.dtype == bool else (mask > 0).astype(np.uint8)


# --------------------------------------------------------------------------- paths and sizes


class ImagePaths:
    """Path of each id inside an image folder: ``image_path`` template (glob, one match) or ``image_file``.

    Folder listings are cached, so resolving a volume's slices lists its folder once.
    """

    def __init__(self, spec: CompetitionSpec, folder: Path) -> None:
        self.spec, self.folder = spec, Path(folder)
        self._listing: dict[Path, list[str]] = {}

    def _names(self, folder: Path) -> list[str]:
        if folder not in self._listing:
            self._listing[folder] = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        return self._listing[folder]

    def __call__(self, image_id: str) -> Path:
        spec = self.spec
        if not spec.image_path:
            return self.folder / spec.image_file(image_id)
        fields = {"id": image_id}
        if spec.volume is not None:
            fields.update(spec.volume.fields([image_id]).iloc[0].to_dict())
        try:
            rel = spec.image_path.format(**fields)
        except KeyError as e:
            raise ConfigError(
                f"competition.image_path {spec.image_path!r}: no field {e.args[0]!r} (fields: {sorted(fields)})"
            ) from e
        if not re.search(r"[*?\[]", rel):
            return self.folder / rel
        where = self.folder / rel
        hits = fnmatch.filter(self._names(where.parent), where.name)
        if len(hits) != 1:
            found = "no file" if not hits else f"{len(hits)} files ({', '.join(hits[:3])})"
            raise FileNotFoundError(f"image {image_id!r}: {found} matches {where} (competition.image_path)")
        return where.parent / hits[0]


def input_size(spec: CompetitionSpec, path: Path) -> tuple[int, int]:
    """(H, W) of an input: the first array of a record folder, else the image file's header."""
    if spec.arrays is not None:
        shape = _load(path / spec.arrays.files[0]).shape
        return int(shape[0]), int(shape[1])
    return image_size(path)


def input_problem(spec: CompetitionSpec, path: Path) -> str:
    """'' when the input's files exist and are not empty, else what is wrong ('missing ...')."""
    files = [path / f for f in spec.arrays.files] if spec.arrays is not None else [path]
    for f in files:
        if not f.is_file():
            return f"missing: {f}" if f != path else "missing"
        if f.stat().st_size == 0:
            return f"empty (0 bytes): {f}" if f != path else "empty (0 bytes)"
    return ""


def input_channels(spec: CompetitionSpec) -> int:
    """Channels K of the model input: the transform's (arrays), the stacked slices (volume), else 3 (RGB)."""
    if spec.arrays is not None:
        return spec.arrays.channels
    if spec.volume is not None:
        return spec.volume.channels
    return 3


def stack_slices(paths: Sequence[Path], image_id: str) -> np.ndarray:
    """float32 [H, W, K] of K gray slices (the first channel of each file); sizes must agree."""
    planes = [read_image(p)[:, :, 0] for p in paths]
    sizes = {pl.shape for pl in planes}
    if len(sizes) > 1:
        raise ImageReadError(f"image {image_id!r}: its stacked slices differ in size {sorted(sizes)}: {list(paths)}")
    return np.stack(planes, axis=-1)


class InputReader:
    """float32 [H, W, K] input of item ``i`` of ``ids`` whose files are ``paths`` (``input_channels`` = K).

    With ``competition.volume`` the neighbour rows are indexed once among ``ids`` (pass whole cases: the
    folds keep them whole) and read on each call.
    """

    def __init__(
        self,
        spec: CompetitionSpec,
        ids: Sequence[str],
        paths: Sequence[Path],
        integer: bool = False,
        draft: tuple[int, int] | None = None,
    ) -> None:
        self.spec, self.ids, self.paths = spec, list(ids), list(paths)
        self.integer = integer  # plain images in the file's integer type (kseg.data.pixels), else float32
        self.draft = draft  # plain JPEGs shrunk to this (H, W) later: reduced decode (``read_pixels_draft``)
        self.neighbours: np.ndarray | None = None
        if spec.volume is not None:
            case, sl = spec.volume_keys(self.ids)
            self.neighbours = neighbour_index(case, sl, spec.volume.offsets)

    def __call__(self, i: int) -> np.ndarray:
        return self.read(i)[0]

    def read(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        """(input [H', W', K], the file's own (H, W)): H', W' are smaller only for a draft-decoded JPEG."""
        if self.spec.arrays is not None:
            x = read_arrays(self.spec.arrays, self.paths[i])
        elif self.neighbours is not None:
            x = stack_slices([self.paths[j] for j in self.neighbours[i]], self.ids[i])
        elif self.draft is not None:
            x, native = read_pixels_draft(self.paths[i], self.draft)
            return (x if self.integer else unit_float(x, self.paths[i])), native
        else:
            x = read_pixels(self.paths[i]) if self.integer else read_image(self.paths[i])
        return x, (int(x.shape[0]), int(x.shape[1]))

    def check(self, i: int) -> None:
        """Decode item ``i``'s own file(s) (raises ImageReadError / FileNotFoundError when unreadable)."""
        if self.spec.arrays is not None:
            read_arrays(self.spec.arrays, self.paths[i])
        else:
            read_image(self.paths[i])
