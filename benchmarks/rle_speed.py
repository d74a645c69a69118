"""RLE encode/decode of 256x1600 masks vs the common Kaggle kernel versions (goals 3x encode, 5x decode).

Decode is timed on two sets of 200 masks, each decoded once per round and discarded (as a loader does):
``dense`` (smooth blobs over ~30% of the image, thousands of runs) and ``sparse`` (Severstal-like: 1-5
rectangular defects per mask, where per-call fixed costs dominate).
"""

from __future__ import annotations

import os
import time

import cv2
import numpy as np

from kseg.data.rle import decode, encode

from _common import best_time, write_results

SHAPE = (256, 1600)
MASKS = 200
ROUNDS = 9


def kernel_encode(img: np.ndarray) -> str:
    """The common kernel: flatten the transposed mask, pad zeros, np.where changes, join a generator."""
    pixels = img.T.flatten()
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def kernel_decode(mask_rle: str, shape: tuple[int, int]) -> np.ndarray:
    """The common kernel: loop over (start, length) pairs writing slices, reshape in Fortran order."""
    s = mask_rle.split()
    starts, lengths = [np.asarray(x, dtype=int) for x in (s[0:][::2], s[1:][::2])]
    starts -= 1
    ends = starts + lengths
    img = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, ends, strict=True):
        img[lo:hi] = 1
    return img.reshape(shape, order="F")


def defect_mask(seed: int = 0) -> np.ndarray:
    """Dense 256x1600 mask [H, W] uint8: smooth blobs covering ~30% of the image."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random(SHAPE).astype(np.float32), (0, 0), 6)
    return (noise > np.quantile(noise, 0.7)).astype(np.uint8)


def sparse_mask(rng: np.random.Generator) -> np.ndarray:
    """Sparse 256x1600 mask [H, W] uint8: 1-5 axis-aligned rectangles, 8-200 px high and 8-300 px wide."""
    mask = np.zeros(SHAPE, dtype=np.uint8)
    for _ in range(int(rng.integers(1, 6))):
        h, w = int(rng.integers(8, 200)), int(rng.integers(8, 300))
        y, x = int(rng.integers(0, SHAPE[0] - h)), int(rng.integers(0, SHAPE[1] - w))
        mask[y : y + h, x : x + w] = 1
    return mask


def decode_record(name: str, rles: list[str]) -> dict:
    """Per-mask decode time of kseg vs the kernel loop over ``rles`` (each decoded once per round)."""
    for rle in rles[:20]:
        assert np.array_equal(decode(rle, SHAPE), kernel_decode(rle, SHAPE))

    def loop(fn) -> float:
        start = time.perf_counter()
        for rle in rles:
            fn(rle, SHAPE)
        return (time.perf_counter() - start) / len(rles)

    # Rounds alternate between the two so that both see the same machine load; the best round counts.
    rounds = [(loop(decode), loop(kernel_decode)) for _ in range(ROUNDS)]
    ours, ref = min(r[0] for r in rounds), min(r[1] for r in rounds)
    runs = float(np.mean([len(r.split()) // 2 for r in rles]))
    return {
        "name": f"rle_decode_{name}_256x1600",
        "ratio": ref / ours,
        "goal": 5.0,
        "ours_us": 1e6 * ours,
        "reference_us": 1e6 * ref,
        "masks": len(rles),
        "mean_runs": runs,
        "load_1min": os.getloadavg()[0],
    }


def main() -> None:
    mask = defect_mask()
    rle = encode(mask)
    assert rle == kernel_encode(mask)
    t_enc, t_enc_ref = best_time(lambda: encode(mask), 5), best_time(lambda: kernel_encode(mask), 5)
    encode_rec = {
        "name": "rle_encode_256x1600",
        "ratio": t_enc_ref / t_enc,
        "goal": 3.0,
        "ours_ms": 1e3 * t_enc,
        "reference_ms": 1e3 * t_enc_ref,
        "runs": len(rle.split()) // 2,
    }
    dense = [encode(defect_mask(seed)) for seed in range(MASKS)]
    rng = np.random.default_rng(0)
    sparse = [encode(sparse_mask(rng)) for _ in range(MASKS)]
    write_results("rle_speed", [encode_rec, decode_record("dense", dense), decode_record("sparse", sparse)])


if __name__ == "__main__":
    main()
