"""Min-size removal: ``kseg.postprocess.remove_small`` (one connectedComponents pass, np.bincount areas,
lookup table over labels) vs the public kernel loop (connectedComponents, then per component
``(labels == i).sum()`` and paint the kept ones). Severstal-sized maps (256 x 1600).

* noisy: blurred noise thresholded at 0.3 (~4000 components, most below min_size), goal >= 20x;
* clean: a few smooth blobs plus a handful of specks (typical confident prediction), goal >= 2x.

Also times ``apply_postprocess`` on a 4-class map (threshold + min size + min area) for the record.
Both outputs are compared pixel by pixel before timing.

    .venv/bin/python benchmarks/postprocess_speed.py
"""

from __future__ import annotations

import cv2
import numpy as np

from kseg.postprocess import ClassParams, apply_postprocess, binarize, quantize, remove_small

from _common import best_time, write_results

H, W = 256, 1600


def kernel_remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Severstal kernel post_process after thresholding (>= min_size kept, as kseg)."""
    num, labels = cv2.connectedComponents(mask.astype(np.uint8))
    out = np.zeros(mask.shape, np.float32)
    for i in range(1, num):
        p = labels == i
        if p.sum() >= min_size:
            out[p] = 1
    return out


def noisy_map(rng: np.random.Generator) -> np.ndarray:
    """uint8 probabilities: blurred uniform noise, ~36% above 0.3 in thousands of components."""
    p = cv2.GaussianBlur(rng.random((H, W), dtype=np.float32), (0, 0), 1.0)
    p = (p - p.min()) / (p.max() - p.min())
    return quantize(np.clip(p * (0.275 / p.mean()), 0, 1))


def clean_map(rng: np.random.Generator) -> np.ndarray:
    """uint8 probabilities: 4 smooth ellipses + 6 small specks, background near 0."""
    m = np.zeros((H, W), np.float32)
    for _ in range(4):
        x, y = int(rng.integers(100, W - 100)), int(rng.integers(40, H - 40))
        cv2.ellipse(m, (x, y), (int(rng.integers(30, 90)), int(rng.integers(10, 30))), 0, 0, 360, 1.0, -1)
    m = cv2.GaussianBlur(m, (0, 0), 3) * 1.2
    for _ in range(6):  # confident specks of ~13 pixels
        cv2.circle(m, (int(rng.integers(0, W)), int(rng.integers(0, H))), 2, 0.9, -1)
    return quantize(np.clip(m, 0, 1))


def main() -> None:
    rng = np.random.default_rng(0)
    records = []
    for name, q, thr, min_size, goal in (
        ("noisy", noisy_map(rng), 0.3, 64, 20.0),
        ("clean", clean_map(rng), 0.5, 64, 2.0),
    ):
        mask = binarize(q, thr)
        n_comp = cv2.connectedComponents(mask.view(np.uint8))[0] - 1
        ours = remove_small(mask, min_size)
        ref = kernel_remove_small(mask, min_size)
        assert np.array_equal(ours, ref > 0), f"{name}: outputs differ"
        assert ours.sum() < mask.sum(), f"{name}: min_size removes nothing, the probe is too easy"
        t_ours = best_time(lambda m=mask, k=min_size: remove_small(m, k), number=3, repeat=7)
        t_kernel = best_time(lambda m=mask, k=min_size: kernel_remove_small(m, k), number=1, repeat=3)
        print(f"{name}: {n_comp} components, kseg {t_ours * 1e3:.2f} ms, kernel loop {t_kernel * 1e3:.1f} ms")
        records.append(
            {
                "name": f"postprocess_min_size_{name}",
                "ratio": round(t_kernel / t_ours, 2),
                "goal": goal,
                "shape": [H, W],
                "threshold": thr,
                "min_size": min_size,
                "components": int(n_comp),
                "kseg_ms": round(t_ours * 1e3, 3),
                "kernel_loop_ms": round(t_kernel * 1e3, 3),
            }
        )
    q4 = np.stack([clean_map(rng), noisy_map(rng), clean_map(rng), np.zeros((H, W), np.uint8)])
    params = [ClassParams(0.5, 64, 200), ClassParams(0.3, 64, 0), ClassParams(0.5, 0, 0), ClassParams(0.5, 64, 0)]
    t_apply = best_time(lambda: apply_postprocess(q4, params), number=3, repeat=5)
    print(f"apply_postprocess 4 x {H} x {W}: {t_apply * 1e3:.1f} ms")
    records[-1]["apply_postprocess_4class_ms"] = round(t_apply * 1e3, 2)
    write_results("postprocess_speed", records)


if __name__ == "__main__":
    main()
