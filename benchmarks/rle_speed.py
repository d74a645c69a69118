"""RLE encode/decode of a 256x1600 mask vs the common Kaggle kernel versions (goals 3x / 5x)."""

from __future__ import annotations

import cv2
import numpy as np

from kseg.data.rle import decode, encode

from _common import best_time, write_results


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
    """Severstal-like 256x1600 mask: smooth blobs covering ~30% of the image."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((256, 1600)).astype(np.float32), (0, 0), 6)
    return (noise > np.quantile(noise, 0.7)).astype(np.uint8)


def main() -> None:
    mask = defect_mask()
    rle = encode(mask)
    assert rle == kernel_encode(mask) and np.array_equal(decode(rle, mask.shape), kernel_decode(rle, mask.shape))
    t_enc, t_enc_ref = best_time(lambda: encode(mask), 5), best_time(lambda: kernel_encode(mask), 5)
    t_dec, t_dec_ref = (
        best_time(lambda: decode(rle, (256, 1600)), 5),
        best_time(lambda: kernel_decode(rle, (256, 1600)), 5),
    )
    runs = len(rle.split()) // 2
    write_results(
        "rle_speed",
        [
            {
                "name": "rle_encode_256x1600",
                "ratio": t_enc_ref / t_enc,
                "goal": 3.0,
                "ours_ms": 1e3 * t_enc,
                "reference_ms": 1e3 * t_enc_ref,
                "runs": runs,
            },
            {
                "name": "rle_decode_256x1600",
                "ratio": t_dec_ref / t_dec,
                "goal": 5.0,
                "ours_ms": 1e3 * t_dec,
                "reference_ms": 1e3 * t_dec_ref,
                "runs": runs,
            },
        ],
    )


if __name__ == "__main__":
    main()
