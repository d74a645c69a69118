"""Street scenes miniature (our own multiclass layout): frame sequences, mutually exclusive classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from kseg.demo.common import Encoder, smooth_noise, to_uint8, write_csv, write_image

STREET_CLASSES = ("road", "sidewalk", "building", "vegetation", "car")
STREET_CITIES = ("aachen", "berlin", "bremen", "hamburg", "koeln", "ulm", "zurich")
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
        "buildings": [
            (x, rng.uniform(0.08, 0.2), rng.uniform(0.05, 0.3)) for x in rng.uniform(-0.05, 0.95, n_buildings)
        ],
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
            rgb = rgb + 10 * smooth_noise(rng, h, w, 8)[..., None]
            write_image(root / f"{split}_images" / f"{image_id}.png", to_uint8(rgb))
            if split == "train":
                rows += [
                    (image_id, name, encode((lab == c + 1).view(np.uint8)))
                    for c, name in enumerate(STREET_CLASSES)
                    if (lab == c + 1).any()
                ]
            else:
                test_ids.append(image_id)
    write_csv(root / "train.csv", pd.DataFrame(rows, columns=["ImageId", "Label", "EncodedPixels"]))
    sample = pd.DataFrame(
        [(i, c, "") for i in sorted(test_ids) for c in STREET_CLASSES], columns=["ImageId", "Label", "EncodedPixels"]
    )
    write_csv(root / "sample_submission.csv", sample)
    return root
