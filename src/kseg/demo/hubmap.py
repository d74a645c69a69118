"""HuBMAP "Hacking the Kidney" miniature: whole-slide TIFFs in the competition's odd layouts, glomeruli masks.

Files as in the real data (``hubmap-kidney-segmentation``): ``train/<id>.tiff`` and ``test/<id>.tiff``
(ids of 9 hex digits such as ``2f6ecfcdf``), ``train.csv`` = ``id,encoding`` (one column-major RLE of every
glomerulus of a slide), ``sample_submission.csv`` = ``id,predicted``, ``<id>.json`` = the glomerulus
polygons (a list of GeoJSON-like features: ``type: Feature``, ``id: PathAnnotationObject``, ``geometry``
``Polygon`` with ``coordinates`` in (x, y) slide pixels, ``properties.classification.name`` =
``glomerulus``), ``<id>-anatomical-structure.json`` (a ``Cortex`` feature) and
``HuBMAP-20-dataset_information.csv`` (``image_file,width_pixels,height_pixels,...``).

The slides cycle through the layouts real slides came in: (H, W, 3) tiled, (1, 1, 3, H, W), (3, H, W),
a pyramid with a half-size subIFD level, and one page per channel. Tissue is pink noise, glomeruli are
purple blobs (polygons of 24 vertices): one epoch of a tiny model finds them.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from kseg.atomic import atomic_write_text
from kseg.demo.common import Encoder, smooth_noise, to_uint8, unique_hex, write_csv

LAYOUTS = ("yxs_tiled", "leading_ones", "channels_first", "pyramid", "pages")


def write_slide(path: Path, image: np.ndarray, layout: str) -> None:
    """Write uint8 [H, W, 3] as a TIFF in one of ``LAYOUTS``."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    if layout == "yxs_tiled":
        tifffile.imwrite(path, image, tile=(256, 256), photometric="rgb")
    elif layout == "leading_ones":
        tifffile.imwrite(path, image.transpose(2, 0, 1)[None, None], photometric="rgb", planarconfig="separate")
    elif layout == "channels_first":
        tifffile.imwrite(path, image.transpose(2, 0, 1), photometric="minisblack")
    elif layout == "pyramid":
        with tifffile.TiffWriter(path) as tif:
            tif.write(image, tile=(256, 256), photometric="rgb", subifds=1)
            tif.write(image[::2, ::2], tile=(256, 256), photometric="rgb", subfiletype=1)
    elif layout == "pages":
        with tifffile.TiffWriter(path) as tif:
            for c in range(3):
                tif.write(image[..., c], photometric="minisblack")
    else:
        raise ValueError(f"slide layout {layout!r} is not one of {', '.join(LAYOUTS)}")


def _feature(polygon: np.ndarray, name: str, color: int, locked: bool) -> dict:
    """One QuPath-style feature of a closed polygon int [K, 2] of (x, y)."""
    ring = np.concatenate([polygon, polygon[:1]]).tolist()
    return {
        "type": "Feature",
        "id": "PathAnnotationObject",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"classification": {"name": name, "colorRGB": color}, "isLocked": locked},
    }


def _glomeruli(rng: np.random.Generator, h: int, w: int, n: int) -> list[np.ndarray]:
    """``n`` blob polygons int32 [24, 2] (x, y) of radius 25-60 px, inside the slide."""
    out = []
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    for _ in range(n):
        r = rng.uniform(25, 60)
        cy, cx = rng.uniform(r + 2, h - r - 2), rng.uniform(r + 2, w - r - 2)
        radius = r * (1 + 0.15 * rng.standard_normal(24)).clip(0.6, 1.4)
        out.append(np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1).round().astype(np.int32))
    return out


def _slide(rng: np.random.Generator, h: int, w: int, n: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(RGB uint8 [H, W, 3], mask uint8 [H, W], glomerulus polygons)."""
    polygons = _glomeruli(rng, h, w, n)
    mask = np.zeros((h, w), np.uint8)
    for p in polygons:  # one call per polygon: a single call fills overlaps even-odd (holes)
        cv2.fillPoly(mask, [p], 1)
    tone = 12 * smooth_noise(rng, h, w, 64)
    grain = 8 * rng.standard_normal((h, w), dtype=np.float32)
    tissue = np.array([228, 176, 204], np.float32)
    glom = np.array([140, 70, 150], np.float32)
    colour = np.where(mask[..., None] > 0, glom, tissue)
    image = to_uint8(colour + (tone + grain)[..., None])
    return image, mask, polygons


def write_hubmap(
    root: str | Path, seed: int = 0, n_train: int = 3, n_test: int = 2, *, encode: Encoder, size: int = 1536
) -> Path:
    """HuBMAP Hacking the Kidney layout (module docstring); slides of about ``size`` pixels a side."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    ids = unique_hex(rng, n_train + n_test, 9)
    rng.shuffle(ids)
    train_ids, test_ids = ids[:n_train], ids[n_train:]
    rows, info = [], []
    for k, image_id in enumerate([*train_ids, *test_ids]):
        split = "train" if k < n_train else "test"
        h, w = int(size * rng.uniform(0.8, 1.0)), int(size * rng.uniform(1.0, 1.25))
        image, mask, polygons = _slide(rng, h, w, n=int(rng.integers(12, 20)))
        write_slide(root / split / f"{image_id}.tiff", image, LAYOUTS[k % len(LAYOUTS)])
        cortex = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.int32)
        anatomy = [_feature(cortex, "Cortex", -352256, False)]
        atomic_write_text(root / split / f"{image_id}-anatomical-structure.json", json.dumps(anatomy, indent=2))
        if split == "train":
            features = [_feature(p, "glomerulus", -3140401, True) for p in polygons]
            atomic_write_text(root / split / f"{image_id}.json", json.dumps(features, indent=2))
            rows.append((image_id, encode(mask)))
        info.append((f"{image_id}.tiff", w, h, f"{image_id}-anatomical-structure.json", f"{image_id}.json", k + 1))
    write_csv(root / "train.csv", pd.DataFrame(rows, columns=["id", "encoding"]))
    write_csv(root / "sample_submission.csv", pd.DataFrame({"id": test_ids, "predicted": [""] * len(test_ids)}))
    columns = [
        "image_file",
        "width_pixels",
        "height_pixels",
        "anatomical_structures_segmention_file",
        "glomerulus_segmentation_file",
        "patient_number",
    ]
    write_csv(root / "HuBMAP-20-dataset_information.csv", pd.DataFrame(info, columns=columns))
    return root
