"""Mask resize alignment: does a perfectly learned training mask restore where it was? (issue 14, item 3)

Round trip per case: native mask -> model (or submission) size with each method -> ``geometry.restore``
(bilinear, align_corners=False, like every prediction) -> threshold 0.5, compared with the native mask:
centroid shift (native pixels, [row, col]) and dice. Methods: ``old`` (cv2.INTER_NEAREST, kseg before),
``nearest_exact`` (cv2.INTER_NEAREST_EXACT), ``area_f32`` / ``linear_f32`` (float resize, >= 0.5), ``new``
(``geometry.resize_masks``) and ``reference``: the exact overlap of the two pixel grids (centre pick
along a growing axis), >= 0.5, computed here with numpy. Probes: a car-sized ellipse and an asymmetric
pair of ellipses. Also: what each method does to 1-pixel lines at 2x and 3x, and time per mask.

Records: ``align_<case>`` ratio = 1 native px / new centroid shift (goal 1: under one native pixel);
``dice_<case>`` ratio = new dice / reference dice (goal 0.9999); ``speed_<case>`` ratio = the loader's
``read_image`` + ``fit_image`` time of the sample's image / new mask time (goal 2: resizing the mask adds
at most half of what its image already costs per sample; the old nearest resize is printed alongside).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from kseg.config import load_config
from kseg.data import geometry
from kseg.data.images import read_image

from _common import REPO, best_time, write_results

CASES = {  # name: (native (H, W), size (H, W)); the shipped configs' sizes first
    "carvana_128": ((1280, 1918), (128, 128)),  # configs/carvana/unet128.yaml
    "carvana_1024": ((1280, 1918), (1024, 1024)),  # a typical full-resolution Carvana model size
    "clouds_320x480": ((1400, 2100), (320, 480)),  # configs/clouds/fpn-effb0.yaml
    "clouds_submission_350x525": ((1400, 2100), (350, 525)),  # truth at the submission size
    "streets_256x512": ((512, 1024), (256, 512)),  # configs/streets: 2x, exclusive classes
    "tgs_resize_128": ((101, 101), (128, 128)),  # upscaling (TGS with data.resize=resize)
    "clouds_pseudo_1400x2100": ((350, 525), (1400, 2100)),  # pseudo-labels: submission -> native
}
METHODS = ("old", "nearest_exact", "area_f32", "linear_f32", "new", "reference")
CFG = load_config(REPO / "configs/demo.yaml", ["data.resize=resize"])


def axis_weights(n: int, k: int) -> np.ndarray:
    """[k, n]: share of new pixel i taken from old pixel j (exact overlap shrinking, centre pick growing)."""
    if k > n:
        w = np.zeros((k, n))
        w[np.arange(k), ((2 * np.arange(k) + 1) * n) // (2 * k)] = 1.0
        return w
    edges = np.arange(k + 1) * (n / k)
    j = np.arange(n)
    return np.clip(np.minimum(edges[1:, None], j + 1) - np.maximum(edges[:-1, None], j), 0, None) * (k / n)


def resize(mask: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """uint8 [H, W] (or [H, W, C] for the cv2 / new methods) -> uint8 at ``size`` by ``method``."""
    dsize = (size[1], size[0])
    if method == "new":
        return geometry.resize_masks(mask, size)
    if method == "reference":
        cov = axis_weights(mask.shape[0], size[0]) @ mask.astype(np.float64) @ axis_weights(mask.shape[1], size[1]).T
        return (cov >= 0.5).astype(np.uint8)
    if method in ("old", "nearest_exact"):
        return cv2.resize(mask, dsize, interpolation=cv2.INTER_NEAREST if method == "old" else cv2.INTER_NEAREST_EXACT)
    interp = cv2.INTER_AREA if method == "area_f32" else cv2.INTER_LINEAR
    return (cv2.resize(mask.astype(np.float32), dsize, interpolation=interp) >= 0.5).astype(np.uint8)


def old_resize_masks(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """kseg's resize_masks before this change: INTER_NEAREST, one call per class beyond 4 classes."""
    if mask.ndim == 3 and mask.shape[2] > 4:
        return np.stack([old_resize_masks(mask[..., c], size) for c in range(mask.shape[2])], axis=-1)
    out = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return out if out.ndim == mask.ndim else out[..., None]


def probes(h: int, w: int) -> dict[str, np.ndarray]:
    y, x = np.mgrid[:h, :w] + 0.5
    car = (((y - 0.52 * h) / (0.3 * h)) ** 2 + ((x - 0.47 * w) / (0.38 * w)) ** 2) <= 1
    body = (((y - 0.6 * h) / (0.25 * h)) ** 2 + ((x - 0.4 * w) / (0.3 * w)) ** 2) <= 1
    head = (((y - 0.3 * h) / (0.2 * h)) ** 2 + ((x - 0.65 * w) / (0.12 * w)) ** 2) <= 1
    return {"ellipse": car.astype(np.uint8), "two_ellipses": (body | head).astype(np.uint8)}


def round_trip(mask: np.ndarray, size: tuple[int, int], method: str) -> dict[str, object]:
    small = resize(mask, size, method)
    probs = torch.from_numpy(small.astype(np.float32))[None, None]
    back = geometry.restore(probs, mask.shape[:2], CFG)[0, 0].numpy() >= 0.5
    shift = np.argwhere(back).mean(axis=0) - np.argwhere(mask).mean(axis=0)
    m = mask.astype(bool)
    dice = 2 * (back & m).sum() / (back.sum() + m.sum())
    return {"centroid_shift_px": [round(float(s), 3) for s in shift], "dice": round(float(dice), 5)}


def alignment_records() -> list[dict]:
    records = []
    print(f"{'case':<27}{'probe':<14}" + "".join(f"{m:>24}" for m in METHODS))
    for case, (native, size) in CASES.items():
        worst_shift, dice_ratio, details = 0.0, np.inf, {}
        for probe, mask in probes(*native).items():
            res = {m: round_trip(mask, size, m) for m in METHODS}
            details[probe] = res
            cells = "".join(f"{str(r['centroid_shift_px']):>16}{r['dice']:>8.4f}" for r in res.values())
            print(f"{case:<27}{probe:<14}{cells}")
            worst_shift = max(worst_shift, *np.abs(res["new"]["centroid_shift_px"]))
            dice_ratio = min(dice_ratio, res["new"]["dice"] / res["reference"]["dice"])
        base = {"native": list(native), "size": list(size), "probes": details}
        records.append(
            {
                "name": f"align_{case}",
                "ratio": 1.0 / max(worst_shift, 1e-3),
                "goal": 1.0,
                "new_max_centroid_shift_px": worst_shift,
                **base,
            }
        )
        records.append(
            {"name": f"dice_{case}", "ratio": dice_ratio, "goal": 0.9999, "native": list(native), "size": list(size)}
        )
    return records


def thin_line_record() -> dict:
    """Share of 1-pixel lines (every column parity) still present after a 2x / 3x downscale."""
    out: dict[str, dict] = {}
    for k in (2, 3):
        kept = {m: 0.0 for m in METHODS if m != "reference"}
        for col in range(k):
            line = np.zeros((12 * k, 12 * k), np.uint8)
            line[:, 5 * k + col] = 1
            for m in kept:
                kept[m] += float(resize(line, (12, 12), m).any()) / k
        image = cv2.resize(line.astype(np.float32), (12, 12), interpolation=cv2.INTER_AREA).max()
        out[f"{k}x"] = {"kept_share": kept, "image_contrast": round(float(image), 3)}
    print("1-px lines kept (share of column parities):", out)
    return {"name": "thin_line_2x_kept", "ratio": out["2x"]["kept_share"]["new"], "goal": 1.0, **out}


def image_load_seconds(native: tuple[int, int], size: tuple[int, int], suffix: str) -> float:
    """Best time of what the loader does with the sample's image: ``read_image`` + ``fit_image``."""
    rng = np.random.default_rng(1)
    smooth = cv2.resize(rng.integers(0, 256, (native[0] // 32, native[1] // 32, 3)).astype(np.uint8), native[::-1])
    cfg = load_config(REPO / "configs/demo.yaml", ["data.resize=resize", f"data.image_size=[{size[0]},{size[1]}]"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"image{suffix}"
        cv2.imwrite(str(path), smooth)
        return best_time(lambda: geometry.fit_image(read_image(path), cfg), 3)


def speed_records() -> list[dict]:
    rng = np.random.default_rng(0)
    cases = {  # name: (native, size, classes, exclusive, image file type)
        "carvana_128_1class": ((1280, 1918), (128, 128), 1, False, ".jpg"),
        "clouds_320x480_4class": ((1400, 2100), (320, 480), 4, False, ".jpg"),
        "streets_256x512_5class_exclusive": ((512, 1024), (256, 512), 5, True, ".png"),
    }
    records = []
    for name, (native, size, c, exclusive, suffix) in cases.items():
        labels = cv2.resize(
            rng.integers(0, c + 1, (native[0] // 16, native[1] // 16)).astype(np.uint8),
            native[::-1],
            interpolation=cv2.INTER_NEAREST,
        )
        mask = np.ascontiguousarray((labels[..., None] == np.arange(1, c + 1)).astype(np.uint8))
        t_new = best_time(lambda m=mask, s=size, e=exclusive: geometry.resize_masks(m, s, exclusive=e), 3)
        t_old = best_time(lambda m=mask, s=size: old_resize_masks(m, s), 3)
        t_image = image_load_seconds(native, size, suffix)
        print(
            f"{name:<36} new {1e3 * t_new:7.2f} ms  old {1e3 * t_old:7.2f} ms  "
            f"image read + fit_image {1e3 * t_image:7.2f} ms"
        )
        records.append(
            {
                "name": f"speed_{name}",
                "ratio": t_image / t_new,
                "goal": 2.0,
                "new_ms": 1e3 * t_new,
                "old_ms": 1e3 * t_old,
                "image_load_ms": 1e3 * t_image,
                "classes": c,
            }
        )
    return records


def main() -> None:
    torch.set_num_threads(1)
    write_results("mask_alignment", alignment_records() + [thin_line_record()] + speed_records())


if __name__ == "__main__":
    main()
