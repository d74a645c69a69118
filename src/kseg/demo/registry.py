"""Miniature competitions: small, deterministic copies of each supported competition's file layout.

Each writer ``write_<name>(root, seed=0, n_train=..., n_test=...) -> root`` writes the competition's real
folders, file names, id formats, image formats and sizes, csv columns, row conventions and line endings
(see the README table "Competitions"), with few images whose shapes are easy to learn (every class has its own
brightness / colour), so one epoch of a tiny model already gives non-empty masks. Masks in the csvs are
Kaggle RLEs at the images' own size. ``MINIATURES`` maps a competition name to its writer, its shipped
experiment config and the overrides of a fast CPU smoke run (``kseg demo --competition NAME --fast``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from kseg.config import atomic_write_text
from kseg.data.rle import RleDialect
from kseg.registry import Registry

log = logging.getLogger(__name__)

Encoder = Callable[[np.ndarray], str]
"""[H, W] mask -> RLE string in the competition's dialect (``spec.rle.encode``; tests pass a reference)."""

__all__ = [
    "Miniature",
    "MINIATURES",
    "write_miniature",
    "write_severstal",
    "write_carvana",
    "write_clouds",
    "write_tgs_salt",
    "write_isbi2012",
    "write_streets",
    "write_airplanes",
    "CARVANA_ANGLES",
    "CLOUD_LABELS",
    "STREET_CLASSES",
]

CARVANA_ANGLES = 16
CLOUD_LABELS = ("Fish", "Flower", "Gravel", "Sugar")
STREET_CLASSES = ("road", "sidewalk", "building", "vegetation", "car")
STREET_CITIES = ("aachen", "berlin", "bremen", "hamburg", "koeln", "ulm", "zurich")


# --------------------------------------------------------------------------- file helpers


def unique_hex(rng: np.random.Generator, n: int, digits: int) -> list[str]:
    """``n`` distinct lower-case hex strings of ``digits`` digits (Kaggle-style image ids), sorted."""
    out: set[str] = set()
    while len(out) < n:
        draws = rng.integers(0, 16**digits, size=n - len(out), dtype=np.int64)
        out.update(f"{int(v):0{digits}x}" for v in draws)
    return sorted(out)


def write_image(path: Path, image: np.ndarray, quality: int = 95) -> None:
    """Write uint8/uint16 [H, W] gray or [H, W, 3] RGB to ``path`` (format from its suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = image[..., ::-1] if image.ndim == 3 else image  # RGB -> BGR for OpenCV
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), np.ascontiguousarray(pixels), params):
        raise OSError(f"could not write image {path}")


def write_gif_mask(path: Path, mask: np.ndarray) -> None:
    """Write a uint8 [H, W] 0/1 mask as a 2-colour palette GIF (index 0 black, 1 white), as Carvana's."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray((mask > 0).astype(np.uint8), mode="P")
    img.putpalette([0, 0, 0, 255, 255, 255])
    img.save(path, format="GIF")


def write_csv(path: Path, df: pd.DataFrame, line_end: str = "\n") -> None:
    """Atomically write ``df`` without index; empty strings stay empty cells."""
    atomic_write_text(path, df.to_csv(index=False, lineterminator=line_end))


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale: int, sigma: float = 1.0) -> np.ndarray:
    """float32 [H, W] smooth noise (std about ``sigma``): normal noise at 1/``scale`` resolution, upsampled."""
    small = rng.standard_normal((max(1, h // scale), max(1, w // scale)), dtype=np.float32) * sigma
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 255).astype(np.uint8)


def _sample_rows(ids: Sequence[str], columns: Sequence[str], rle: str) -> pd.DataFrame:
    """One-class sample submission: one row per image, RLE column set to ``rle``."""
    return pd.DataFrame({columns[0]: list(ids), columns[1]: rle})


# --------------------------------------------------------------------------- severstal


def write_severstal(root: str | Path, seed: int = 0, n_train: int = 16, n_test: int = 4, p_empty: float = 0.45,
                    *, encode: Encoder) -> Path:
    """Severstal steel defects: ``train_images/<9 hex>.jpg`` 256x1600 RGB (grey steel), 4 defect classes.

    ``train.csv`` = ``ImageId,ClassId,EncodedPixels`` with only non-empty rows; ``sample_submission.csv`` =
    ``ImageId,EncodedPixels,ClassId`` (that column order), one row per test image x class.
    """
    from kseg.demo.synthetic import make_sample

    root = Path(root)
    rng = np.random.default_rng(seed)
    ids = unique_hex(rng, n_train + n_test, 9)
    rng.shuffle(ids)
    train_ids, test_ids = sorted(ids[:n_train]), sorted(ids[n_train:])
    rows = []
    for split, split_ids in (("train", train_ids), ("test", test_ids)):
        for k, image_id in enumerate(split_ids):
            forced = (k,) if split == "train" and k < 4 else None  # every class occurs in training
            bgr, masks = make_sample(rng, 256, 1600, p_empty, forced)
            write_image(root / f"{split}_images" / f"{image_id}.jpg", bgr[..., ::-1])
            if split == "train":
                rows += [(f"{image_id}.jpg", c + 1, encode(masks[c])) for c in range(4) if masks[c].any()]
    write_csv(root / "train.csv", pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"]))
    sample = pd.DataFrame([(f"{i}.jpg", "1 1", c) for i in test_ids for c in range(1, 5)],
                          columns=["ImageId", "EncodedPixels", "ClassId"])  # fmt: skip
    write_csv(root / "sample_submission.csv", sample)
    return root


# --------------------------------------------------------------------------- carvana


def carvana_angles(angles: int | Sequence[int]) -> list[int]:
    """Angle numbers 1..16: all of a sequence, or ``angles`` evenly spaced ones (16 -> 1..16, 2 -> 1, 9)."""
    if isinstance(angles, int):
        if not 1 <= angles <= CARVANA_ANGLES:
            raise ValueError(f"angles: between 1 and {CARVANA_ANGLES}, got {angles}")
        return [1 + (CARVANA_ANGLES * i) // angles for i in range(angles)]
    out = sorted({int(a) for a in angles})
    if not out or out[0] < 1 or out[-1] > CARVANA_ANGLES:
        raise ValueError(f"angles: numbers in 1..{CARVANA_ANGLES}, got {list(angles)}")
    return out


def _car(rng: np.random.Generator, colour: np.ndarray, angle: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One studio photo of a car seen from angle 1..16: (RGB uint8 [H, W, 3], mask uint8 [H, W]).

    Drawn straight into uint8 with OpenCV (fast at 1280x1918): light grey backdrop, darker floor, a soft
    shadow under the car (dark, not car), the body in the car's paint, dark windows and wheels (car).
    """
    theta = 2 * np.pi * (angle - 1) / CARVANA_ANGLES
    side = abs(np.sin(theta))  # 1 seen from the side (long), 0 from the front / back (short)
    column = np.clip(235 - 25 * np.linspace(0, 1, h), 0, 255).astype(np.uint8)
    image = np.empty((h, w, 3), np.uint8)
    image[:] = column[:, None, None]
    floor = int(0.78 * h)
    image[floor:] -= 12
    half_len = int((0.18 + 0.2 * side) * w)
    cx, base = w // 2 + int(rng.integers(-w // 40, w // 40 + 1)), int(0.74 * h)
    body_h, cabin_h = int(0.16 * h), int(0.13 * h)
    cv2.ellipse(image, (cx, base + body_h // 3), (int(half_len * 1.05), int(0.04 * h)), 0, 0, 360, (120, 120, 120), -1)
    cabin = int(half_len * (0.55 + 0.1 * side))
    roof = base - body_h - cabin_h
    cabin_pts = np.array([[cx - cabin, base - body_h], [cx - int(cabin * 0.7), roof],
                          [cx + int(cabin * 0.7), roof], [cx + cabin, base - body_h]], np.int32)  # fmt: skip
    top = roof + int(0.02 * h)
    glass = np.array([[cx - int(cabin * 0.85), base - body_h - 4], [cx - int(cabin * 0.62), top],
                      [cx + int(cabin * 0.62), top], [cx + int(cabin * 0.85), base - body_h - 4]], np.int32)  # fmt: skip
    r = int(0.055 * h)
    wheels = [(cx + int(dx * half_len), base) for dx in ((-0.7, 0.7) if side > 0.3 else (-0.8, 0.8))]
    paint = tuple(int(v) for v in colour)
    mask = np.zeros((h, w), np.uint8)
    for target, value in ((image, paint), (mask, 1)):
        cv2.rectangle(target, (cx - half_len, base - body_h), (cx + half_len, base), value, -1)
        cv2.fillPoly(target, [cabin_pts], value)
        for centre in wheels:
            cv2.circle(target, centre, r, value, -1)
    cv2.fillPoly(image, [glass], (45, 55, 70))
    for centre in wheels:
        cv2.circle(image, centre, r, (25, 25, 25), -1)
    noise = np.clip(10 + 4 * _smooth_noise(rng, h, w, 32), 0, 255).astype(np.uint8)
    image = cv2.subtract(cv2.add(image, cv2.merge([noise, noise, noise])), (10, 10, 10, 0))
    return image, mask


def write_carvana(
    root: str | Path, seed: int = 0, n_train: int = 3, n_test: int = 1, angles: int | Sequence[int] = CARVANA_ANGLES,
    *, encode: Encoder,
) -> Path:
    """Carvana: ``train/<12 hex>_<01..16>.jpg`` 1918x1280 (W x H) RGB, ``n_train`` / ``n_test`` *cars*.

    Masks as ``train_masks/<id>_<angle>_mask.gif`` and ``train_masks.csv`` (``img,rle_mask``, every image),
    ``metadata.csv`` (id, year, make, model, trim1, trim2), ``test/``, ``sample_submission.csv``
    (``img,rle_mask`` at full size). ``angles`` < 16 keeps fewer views per car (faster tests).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = 1280, 1918
    cars = unique_hex(rng, n_train + n_test, 12)
    rng.shuffle(cars)
    train_cars, test_cars = sorted(cars[:n_train]), sorted(cars[n_train:])
    views = carvana_angles(angles)
    rows, test_files = [], []
    for split, split_cars in (("train", train_cars), ("test", test_cars)):
        for car in split_cars:
            colour = rng.uniform(20, 200, size=3).astype(np.float32)
            colour[int(rng.integers(3))] = rng.uniform(150, 230)  # saturated paint, never backdrop grey
            for a in views:
                name = f"{car}_{a:02d}"
                image, mask = _car(rng, colour, a, h, w)
                write_image(root / split / f"{name}.jpg", image, quality=90)
                if split == "train":
                    write_gif_mask(root / "train_masks" / f"{name}_mask.gif", mask)
                    rows.append((f"{name}.jpg", encode(mask)))
                else:
                    test_files.append(f"{name}.jpg")
    write_csv(root / "train_masks.csv", pd.DataFrame(rows, columns=["img", "rle_mask"]))
    write_csv(root / "sample_submission.csv", _sample_rows(test_files, ["img", "rle_mask"], "1 1"))
    makes = [("Acura", "MDX"), ("Audi", "A4"), ("BMW", "3 Series"), ("Chevrolet", "Tahoe"), ("Ford", "F-150")]
    meta = [(car, 2010 + int(rng.integers(0, 8)), *makes[int(rng.integers(len(makes)))], "Base", "")
            for car in sorted(cars)]  # fmt: skip
    write_csv(root / "metadata.csv", pd.DataFrame(meta, columns=["id", "year", "make", "model", "trim1", "trim2"]))
    return root


# --------------------------------------------------------------------------- clouds

_CLOUD_LEVEL = np.array([215.0, 175.0, 140.0, 110.0], dtype=np.float32)  # Fish, Flower, Gravel, Sugar


def _cloud_texture(rng: np.random.Generator, cls: int, h: int, w: int) -> np.ndarray:
    """float32 [h, w] cloud field of pattern ``cls``: level per class, texture scale per class."""
    scale = (24, 12, 4, 2)[cls]
    field_ = _smooth_noise(rng, h, w, scale, 1.0)
    return _CLOUD_LEVEL[cls] + 18.0 * field_


def write_clouds(root: str | Path, seed: int = 0, n_train: int = 12, n_test: int = 4, p_empty: float = 0.1,
                 *, encode: Encoder) -> Path:
    """Understanding Clouds: ``train_images/<7 hex>.jpg`` 1400x2100 (H x W), 4 overlapping cloud patterns.

    ``train.csv`` = ``Image_Label,EncodedPixels`` with all 4 ``<file>_<Fish|Flower|Gravel|Sugar>`` rows per
    image (empty cells allowed), masks are unions of boxes like the crowd labels; some images have the black
    no-data band of the satellite swaths. ``sample_submission.csv`` lists test images x labels (Kaggle scored
    it at 350x525).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    H, W, q = 1400, 2100, 4  # drawn at a quarter size, upsampled
    h, w = H // q, W // q
    ids = unique_hex(rng, n_train + n_test, 7)
    rng.shuffle(ids)
    train_ids, test_ids = sorted(ids[:n_train]), sorted(ids[n_train:])
    rows = []
    for split, split_ids in (("train", train_ids), ("test", test_ids)):
        for k, image_id in enumerate(split_ids):
            ocean = 45 + 6 * _smooth_noise(rng, h, w, 16)
            gray = ocean.copy()
            masks = np.zeros((4, h, w), np.uint8)
            if (split == "train" and k < 4) or rng.random() >= p_empty:
                chosen = rng.choice(4, size=int(rng.integers(1, 4)), replace=False)
                if split == "train" and k < 4 and k not in chosen:  # every pattern occurs in training
                    chosen = np.append(chosen, k)
                for cls in chosen:
                    for _ in range(int(rng.integers(1, 3))):
                        bh, bw = int(rng.uniform(0.2, 0.5) * h), int(rng.uniform(0.15, 0.4) * w)
                        y, x = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
                        masks[cls, y : y + bh, x : x + bw] = 1
                    tex = _cloud_texture(rng, int(cls), h, w)
                    gray = np.where(masks[cls] > 0, tex, gray)
            if rng.random() < 0.4:  # no-data band between satellite swaths
                x0, slope = rng.uniform(0, w), rng.uniform(-0.5, 0.5)
                xx = np.arange(w)[None, :] - (x0 + slope * np.arange(h)[:, None])
                gray = np.where(np.abs(xx) < w * 0.04, 0.0, gray)
            big = cv2.resize(gray.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
            rgb = np.stack([big * 0.95, big * 0.98, big * 1.05], axis=-1)
            file = f"{image_id}.jpg"
            write_image(root / f"{split}_images" / file, _to_uint8(rgb), quality=90)
            if split == "train":
                for cls, label in enumerate(CLOUD_LABELS):
                    full = cv2.resize(masks[cls], (W, H), interpolation=cv2.INTER_NEAREST)
                    rows.append((f"{file}_{label}", encode(full)))
    write_csv(root / "train.csv", pd.DataFrame(rows, columns=["Image_Label", "EncodedPixels"]))
    sample = pd.DataFrame([(f"{i}.jpg_{lab}", "1 1") for i in test_ids for lab in CLOUD_LABELS],
                          columns=["Image_Label", "EncodedPixels"])  # fmt: skip
    write_csv(root / "sample_submission.csv", sample)
    return root


# --------------------------------------------------------------------------- tgs-salt


def _seismic(rng: np.random.Generator, size: int, salt: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One 101x101 seismic slice: (gray uint8 [S, S], salt mask uint8 [S, S]); about 40% without salt.

    ``salt=True`` forces a salt body.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    warp = 4 * _smooth_noise(rng, size, size, 25)
    layers = 128 + 45 * np.sin((yy + warp) / rng.uniform(2.5, 5.0) + rng.uniform(0, 6.3))
    mask = np.zeros((size, size), np.uint8)
    kind = rng.random()
    if salt:
        kind = 0.4 + 0.6 * kind
    if kind >= 0.4:  # salt body: below a smooth top boundary, or a dome
        if kind < 0.75:
            top = rng.uniform(-10, 80) + 15 * _smooth_noise(rng, 1, size, 25)[0]
            mask[yy >= top[None, :].astype(np.float32)] = 1
        else:
            cy, cx = rng.uniform(30, 100), rng.uniform(0, size)
            ry, rx = rng.uniform(15, 50), rng.uniform(20, 60)
            mask[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 1
    salt = 95 + 6 * rng.standard_normal((size, size), dtype=np.float32)  # flat, darker, chaotic
    gray = np.where(mask > 0, salt, layers) + 4 * rng.standard_normal((size, size), dtype=np.float32)
    return _to_uint8(gray), mask


def write_tgs_salt(root: str | Path, seed: int = 0, n_train: int = 24, n_test: int = 8, *, encode: Encoder) -> Path:
    """TGS Salt: ``train/images/<10 hex>.png`` 101x101 (3-channel PNG of a gray image), ``train/masks/<id>.png``.

    Masks are 16-bit 0/65535 where non-empty and 8-bit zeros where empty, as in the real data; ``train.csv``
    = ``id,rle_mask`` (all images, empty cells for empty masks), ``depths.csv`` = ``id,z`` for train and test,
    ``test/images/``, ``sample_submission.csv`` = ``id,rle_mask`` with ``1 1``. Row orders are shuffled.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    ids = unique_hex(rng, n_train + n_test, 10)
    rng.shuffle(ids)
    train_ids, test_ids = ids[:n_train], ids[n_train:]
    rows = []
    for k, image_id in enumerate(train_ids):
        gray, mask = _seismic(rng, 101, salt=k == 0 or None)
        write_image(root / "train" / "images" / f"{image_id}.png", np.repeat(gray[..., None], 3, axis=2))
        stored = mask.astype(np.uint16) * 65535 if mask.any() else mask
        write_image(root / "train" / "masks" / f"{image_id}.png", stored)
        rows.append((image_id, encode(mask)))
    for image_id in test_ids:
        gray, _ = _seismic(rng, 101)
        write_image(root / "test" / "images" / f"{image_id}.png", np.repeat(gray[..., None], 3, axis=2))
    write_csv(root / "train.csv", pd.DataFrame(rows, columns=["id", "rle_mask"]))
    everyone = list(ids)
    rng.shuffle(everyone)
    depths = pd.DataFrame({"id": everyone, "z": rng.integers(51, 960, size=len(everyone))})
    write_csv(root / "depths.csv", depths)
    write_csv(root / "sample_submission.csv", _sample_rows(test_ids, ["id", "rle_mask"], "1 1"))
    return root


# --------------------------------------------------------------------------- isbi2012


def _membranes(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One EM slice: (gray uint8 [S, S], membrane mask uint8 [S, S] ~20% of pixels): Voronoi cell walls."""
    seeds = np.full((size, size), 255, np.uint8)
    n = int(rng.integers(90, 140))
    seeds[rng.integers(0, size, n), rng.integers(0, size, n)] = 0
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP)
    edge = np.zeros((size, size), np.uint8)
    edge[:, 1:] |= (labels[:, 1:] != labels[:, :-1]).astype(np.uint8)
    edge[1:, :] |= (labels[1:, :] != labels[:-1, :]).astype(np.uint8)
    mask = cv2.dilate(edge, np.ones((7, 7), np.uint8))
    gray = 165 + 10 * _smooth_noise(rng, size, size, 8) - 80 * cv2.GaussianBlur(mask.astype(np.float32), (5, 5), 0)
    blobs = np.zeros((size, size), np.uint8)  # mitochondria: dark, but not membrane
    for _ in range(int(rng.integers(4, 9))):
        centre = (int(rng.integers(size)), int(rng.integers(size)))
        axes = (int(rng.integers(6, 14)), int(rng.integers(4, 8)))
        cv2.ellipse(blobs, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    gray = np.where((blobs > 0) & (mask == 0), gray - 45, gray)
    gray = gray + 8 * rng.standard_normal((size, size), dtype=np.float32)
    return _to_uint8(gray), mask


def write_isbi2012(root: str | Path, seed: int = 0, n_train: int = 6, n_test: int = 2, *, encode: Encoder) -> Path:
    """ISBI 2012 EM membranes: ``train_images/isbi_NN.png`` 512x512 8-bit gray, ``test_images/isbi_test_NN.png``.

    ``train.csv`` = ``ImageId,EncodedPixels`` (membrane = 1), ``sample_submission.csv`` with empty RLEs,
    both with CRLF line ends like ``../shared/data/isbi2012``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train):
        gray, mask = _membranes(rng, 512)
        write_image(root / "train_images" / f"isbi_{i:02d}.png", gray)
        rows.append((f"isbi_{i:02d}.png", encode(mask)))
    for i in range(n_test):
        gray, _ = _membranes(rng, 512)
        write_image(root / "test_images" / f"isbi_test_{i:02d}.png", gray)
    write_csv(root / "train.csv", pd.DataFrame(rows, columns=["ImageId", "EncodedPixels"]), "\r\n")
    test_files = [f"isbi_test_{i:02d}.png" for i in range(n_test)]
    write_csv(root / "sample_submission.csv", _sample_rows(test_files, ["ImageId", "EncodedPixels"], ""), "\r\n")
    return root


# --------------------------------------------------------------------------- streets (our own multiclass layout)

_STREET_RGB = np.array(
    [[70, 70, 75], [200, 160, 170], [150, 110, 80], [60, 150, 50], [220, 30, 30]], dtype=np.float32
)  # road, sidewalk, building, vegetation, car


def _street_layout(rng: np.random.Generator, every_class: bool) -> dict[str, Any]:
    """Random layout of one sequence (fractions of the image size); ``every_class`` adds a tree and a car."""
    n_buildings = int(rng.integers(2, 6))
    n_trees, n_cars = int(rng.integers(every_class, 4)), int(rng.integers(every_class, 4))
    return {
        "horizon": rng.uniform(0.38, 0.5),
        "vanish": rng.uniform(0.4, 0.6),
        "road": (rng.uniform(0.05, 0.25), rng.uniform(0.75, 0.95)),
        "buildings": [(x, rng.uniform(0.08, 0.2), rng.uniform(0.05, 0.3)) for x in rng.uniform(-0.05, 0.95, n_buildings)],
        "trees": [(rng.uniform(0, 1), rng.uniform(0.3, 0.5), rng.uniform(0.05, 0.12)) for _ in range(n_trees)],
        "cars": list(rng.uniform(0.15, 0.9, n_cars)),
    }


def _street_scene(rng: np.random.Generator, p: dict[str, Any], h: int, w: int) -> np.ndarray:
    """Label map int [H, W] (0 = sky / other, c + 1 = STREET_CLASSES[c]) of one frame of a sequence."""
    lab = np.zeros((h, w), np.uint8)
    horizon = int(p["horizon"] * h) + int(rng.integers(-4, 5))
    vx = int(p["vanish"] * w) + int(rng.integers(-8, 9))
    for x0, bw, top in p["buildings"]:  # 3: building
        x0 = int(x0 * w) + int(rng.integers(-6, 7))
        cv2.rectangle(lab, (x0, int(top * h)), (x0 + int(bw * w), horizon + 10), 3, -1)
    for cx, cy, r in p["trees"]:  # 4: vegetation
        cv2.circle(lab, (int(cx * w) + int(rng.integers(-6, 7)), int(cy * h)), int(r * h), 4, -1)
    road_l, road_r = int(p["road"][0] * w), int(p["road"][1] * w)
    road = np.array([[vx - 6, horizon], [vx + 6, horizon], [road_r, h], [road_l, h]], np.int32)
    walk_l = np.array([[vx - 12, horizon], [vx - 6, horizon], [road_l, h], [road_l - int(0.15 * w), h]], np.int32)
    walk_r = np.array([[vx + 6, horizon], [vx + 12, horizon], [road_r + int(0.15 * w), h], [road_r, h]], np.int32)
    cv2.fillPoly(lab, [road], 1)
    cv2.fillPoly(lab, [walk_l, walk_r], 2)
    for t in p["cars"]:  # 5: car, on the road, bigger when nearer
        t = float(np.clip(t + rng.uniform(-0.03, 0.03), 0.1, 0.95))
        y = int(horizon + t * (h - horizon))
        half = int((road_r - road_l) * t * 0.22)
        x = int(vx + (rng.uniform(-0.25, 0.25) * (road_r - road_l) * t))
        cv2.rectangle(lab, (x - half, y - int(half * 0.8)), (x + half, y), 5, -1)
    return lab


def write_streets(
    root: str | Path,
    seed: int = 0,
    n_train: int = 12,
    n_test: int = 4,
    frames: int = 3,
    size: tuple[int, int] = (512, 1024),
    *,
    encode: Encoder,
) -> Path:
    """Street scenes (our own multiclass layout): ``train_images/<city>_<seq:06>_<frame:06>.png`` 512x1024 RGB.

    5 mutually exclusive classes (road, sidewalk, building, vegetation, car; sky/other = background).
    ``train.csv`` = ``ImageId,Label,EncodedPixels`` (ids without extension, labels by name) with only
    non-empty rows; ``sample_submission.csv`` has the same columns, one row per test image x class.
    Training frames come in sequences of ``frames`` (near duplicates: keep a sequence in one fold).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = size
    n_seq = -(-n_train // frames)
    rows, test_ids = [], []
    seq_ids = rng.choice(1000, size=n_seq + n_test, replace=False)
    for s in range(n_seq + n_test):
        split = "train" if s < n_seq else "test"
        city = STREET_CITIES[int(rng.integers(len(STREET_CITIES)))]
        p = _street_layout(rng, every_class=s == 0)  # the first sequence has every class
        n_frames = min(frames, n_train - s * frames) if split == "train" else 1
        for f in range(n_frames):
            image_id = f"{city}_{int(seq_ids[s]):06d}_{19 + 10 * f:06d}"
            lab = _street_scene(rng, p, h, w)
            yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
            sky = np.array([120, 160, 215], np.float32) + 30 * yy
            rgb = np.where(lab[..., None] > 0, _STREET_RGB[np.maximum(lab, 1) - 1], sky)
            rgb = rgb + 10 * _smooth_noise(rng, h, w, 8)[..., None]
            write_image(root / f"{split}_images" / f"{image_id}.png", _to_uint8(rgb))
            if split == "train":
                rows += [(image_id, name, encode((lab == c + 1).view(np.uint8)))
                         for c, name in enumerate(STREET_CLASSES) if (lab == c + 1).any()]  # fmt: skip
            else:
                test_ids.append(image_id)
    write_csv(root / "train.csv", pd.DataFrame(rows, columns=["ImageId", "Label", "EncodedPixels"]))
    sample = pd.DataFrame(
        [(i, c, "") for i in sorted(test_ids) for c in STREET_CLASSES], columns=["ImageId", "Label", "EncodedPixels"]
    )
    write_csv(root / "sample_submission.csv", sample)
    return root


# --------------------------------------------------------------------------- airplanes (our own binary layout)


def _airplane(cx: float, cy: float, size: float, angle: float) -> list[np.ndarray]:
    """int32 polygons [K, 2] (fuselage, wings, tail) of an airplane rotated by ``angle`` radians."""
    fus = [(-0.5, -0.06), (0.5, -0.06), (0.55, 0.0), (0.5, 0.06), (-0.5, 0.06)]
    wings = [(0.1, 0.0), (-0.1, -0.5), (-0.22, -0.5), (-0.1, 0.0), (-0.22, 0.5), (-0.1, 0.5)]
    tail = [(-0.38, 0.0), (-0.5, -0.2), (-0.56, -0.2), (-0.5, 0.0), (-0.56, 0.2), (-0.5, 0.2)]
    c, s = np.cos(angle), np.sin(angle)
    out = []
    for poly in (fus, wings, tail):
        p = np.array(poly, np.float32) * size
        rot = np.stack([p[:, 0] * c - p[:, 1] * s + cx, p[:, 0] * s + p[:, 1] * c + cy], axis=1)
        out.append(np.round(rot).astype(np.int32))
    return out


def write_airplanes(root: str | Path, seed: int = 0, n_train: int = 16, n_test: int = 4, p_empty: float = 0.3,
                    *, encode: Encoder) -> Path:
    """Airport tiles (our own binary layout): ``train_images/<8 hex>.jpg`` 512x512 RGB, class airplane.

    ``train.csv`` = ``ImageId,EncodedPixels`` (ids with extension), one row per image, empty cell when no
    airplane; ``sample_submission.csv`` the same columns with ``1 1``. Taxiway lines and shadows are
    bright / dark distractors that are not airplanes.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    size = 512
    ids = unique_hex(rng, n_train + n_test, 8)
    rng.shuffle(ids)
    train_ids, test_ids = sorted(ids[:n_train]), sorted(ids[n_train:])
    rows = []
    for split, split_ids in (("train", train_ids), ("test", test_ids)):
        for k, image_id in enumerate(split_ids):
            rgb = np.empty((size, size, 3), np.float32)
            rgb[:] = np.array([105, 105, 100], np.float32) + 8 * _smooth_noise(rng, size, size, 32)[..., None]
            grass = np.zeros((size, size), np.uint8)
            for _ in range(int(rng.integers(0, 3))):
                x, y = int(rng.integers(size)), int(rng.integers(size))
                cv2.rectangle(grass, (x, y), (x + int(rng.integers(60, 200)), y + int(rng.integers(60, 200))), 1, -1)
            rgb[grass > 0] = (70, 120, 55)
            lines = np.zeros((size, size), np.uint8)
            for _ in range(int(rng.integers(1, 4))):
                p0, p1 = rng.integers(0, size, 2), rng.integers(0, size, 2)
                cv2.line(lines, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), 1, 3)
            rgb[lines > 0] = (210, 190, 70)  # yellow taxiway lines
            mask = np.zeros((size, size), np.uint8)
            if (split == "train" and k == 0) or rng.random() >= p_empty:
                for _ in range(int(rng.integers(1, 4))):
                    span, ang = rng.uniform(40, 110), rng.uniform(0, 2 * np.pi)
                    cx, cy = rng.uniform(span / 2, size - span / 2, 2)
                    shadow = np.zeros((size, size), np.uint8)
                    cv2.fillPoly(shadow, _airplane(cx + 6, cy + 6, span, ang), 1)
                    rgb[shadow > 0] *= 0.5
                    cv2.fillPoly(mask, _airplane(cx, cy, span, ang), 1)
            rgb[mask > 0] = (240, 240, 245)
            rgb += 5 * rng.standard_normal((size, size, 1), dtype=np.float32)
            write_image(root / f"{split}_images" / f"{image_id}.jpg", _to_uint8(rgb))
            if split == "train":
                rows.append((f"{image_id}.jpg", encode(mask)))
    write_csv(root / "train.csv", pd.DataFrame(rows, columns=["ImageId", "EncodedPixels"]))
    test_files = [f"{i}.jpg" for i in test_ids]
    write_csv(root / "sample_submission.csv", _sample_rows(test_files, ["ImageId", "EncodedPixels"], "1 1"))
    return root


# --------------------------------------------------------------------------- registry


def _write_demo(root: str | Path, seed: int = 0, n_train: int = 48, n_test: int = 16, *, encode: Encoder) -> Path:
    from kseg.demo.synthetic import make_demo

    return make_demo(root, seed=seed, n_train=n_train, n_test=n_test, encode=encode)


_TINY_UNET = (
    "model.encoder=resnet18",
    "model.encoder_weights=none",
    "model.kwargs={encoder_depth: 3, decoder_channels: [32, 16, 8]}",
)
_FAST = ("train.epochs=1", "data.n_folds=2", "data.num_workers=0", "wandb.mode=disabled",
         "model.freeze_encoder_epochs=0", "train.patience=0")  # fmt: skip


def shipped_path(path: str | Path) -> Path:
    """A shipped file (config) relative to the working folder, else to the kseg checkout."""
    here = Path(path)
    if here.is_file():
        return here
    import kseg

    return Path(kseg.__file__).resolve().parents[2] / path


@dataclass(frozen=True)
class Miniature:
    """A miniature competition: its writer, shipped config, fast overrides and small writer arguments."""

    name: str
    writer: Callable[..., Path]
    config: str  # shipped experiment config, relative to the repository root
    fast: tuple[str, ...] = ()  # overrides of a 1-epoch CPU smoke run (tiny encoder, no pretrained weights)
    small: dict[str, Any] = field(default_factory=dict)  # writer arguments of the end-to-end test

    def dialect(self) -> RleDialect:
        """The RLE dialect of the shipped config's competition spec (what the csvs are written in)."""
        from kseg.config import load_config

        return load_config(shipped_path(self.config)).competition.rle

    def write(self, root: str | Path, seed: int = 0, encode: Encoder | None = None, **kwargs: Any) -> Path:
        """Write the miniature to ``root`` (created); returns ``root``.

        ``encode`` writes the csv masks; default: the shipped spec's dialect (tests pass a reference encoder).
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        out = self.writer(root, seed=seed, encode=encode or self.dialect().encode, **kwargs)
        log.info("wrote miniature %s to %s", self.name, root)
        return out


MINIATURES: Registry[Miniature] = Registry("miniature competition")
for _m in (
    Miniature("demo", _write_demo, "configs/demo.yaml", _FAST + ("data.image_size=[64, 128]",),
              {"n_train": 20, "n_test": 2}),
    Miniature("severstal", write_severstal, "configs/severstal/unet-resnet18.yaml",
              _FAST + _TINY_UNET + ("data.image_size=[64, 384]", "data.batch_size=4", "train.accumulate=1"),
              {"n_train": 8, "n_test": 2}),
    Miniature("carvana", write_carvana, "configs/carvana/unet128.yaml",
              _FAST + _TINY_UNET + ("data.image_size=[64, 96]", "data.batch_size=4"),
              {"n_train": 2, "n_test": 1, "angles": 4}),
    Miniature("clouds", write_clouds, "configs/clouds/fpn-effb0.yaml",
              _FAST + ("model.encoder=resnet18", "model.encoder_weights=none", "model.kwargs={}",
                       "data.image_size=[64, 96]", "data.batch_size=4"),
              {"n_train": 8, "n_test": 2}),
    Miniature("tgs-salt", write_tgs_salt, "configs/tgs-salt/unet-r34.yaml",
              _FAST + _TINY_UNET + ("data.batch_size=8",), {"n_train": 12, "n_test": 4}),
    Miniature("isbi2012", write_isbi2012, "configs/isbi2012/unet.yaml",
              _FAST + _TINY_UNET + ("data.image_size=[128, 128]", "data.batch_size=2"), {"n_train": 4, "n_test": 2}),
    Miniature("streets", write_streets, "configs/streets/unet-mobilenetv2.yaml",
              _FAST + _TINY_UNET + ("data.image_size=[64, 128]", "data.batch_size=4"),
              {"n_train": 8, "n_test": 2, "frames": 2}),
    Miniature("airplanes", write_airplanes, "configs/airplanes/unet-binary.yaml",
              _FAST + _TINY_UNET + ("data.image_size=[128, 128]", "data.batch_size=4"), {"n_train": 8, "n_test": 2}),
):  # fmt: skip
    MINIATURES.register(_m.name, _m)


def write_miniature(name: str, root: str | Path, seed: int = 0, **kwargs: Any) -> Path:
    """Write the miniature competition ``name`` (see ``MINIATURES.names()``) to ``root``; returns ``root``."""
    return MINIATURES.get(name).write(root, seed=seed, **kwargs)
