"""Kaggle run-length encoding (RLE): the project's only codec.

Format: pixels are numbered 1..H*W in column-major (Fortran) order, i.e. top to
bottom, then left to right.  A mask is written as ``"start length start length ..."``
with 1-indexed starts, runs sorted ascending and separated by single spaces.  An
empty mask is ``""``; pandas reads such cells as NaN, so NaN and None decode to an
empty mask as well.

Every check on an RLE string lives in :func:`_problems`; :func:`validate_rle` returns
its findings, :func:`decode` and :func:`rle_area` raise the first one.
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any, Sequence

import cv2
import numpy as np

__all__ = [
    "encode",
    "encode_batch",
    "decode",
    "validate_rle",
    "rle_area",
]

# Bytes of a well-formed RLE string: ASCII digits and ordinary whitespace.
_WELL_FORMED_BYTES = b"0123456789 \t\r\n"
# A whitespace-delimited token that is not a plain (optionally negative) ASCII integer.
_BAD_TOKEN = re.compile(r"(?<!\S)(?!-?[0-9]+(?!\S))\S+")
_INT64_MAX = np.iinfo(np.int64).max
_MAX_LISTED = 5  # bad tokens quoted per problem message


def _as_shape(shape: Sequence[int]) -> tuple[int, int]:
    """Return ``shape`` as ``(H, W)`` positive ints or raise ValueError."""
    try:
        h, w = (operator.index(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a pair of ints (H, W), got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive (H, W), got {(h, w)}")
    return h, w


def _is_empty(rle: object) -> bool:
    """True for the encodings of an empty mask: None, NaN, '' or whitespace only."""
    if rle is None:
        return True
    if isinstance(rle, float):
        return math.isnan(rle)
    return isinstance(rle, str) and not rle.strip()


def _parse(rle: str) -> tuple[np.ndarray | None, list[str]]:
    """Parse the integers of a non-empty RLE string; returns (int64 [K] or None, problems)."""
    if rle.isascii() and not rle.encode("ascii").translate(None, _WELL_FORMED_BYTES):
        # Fast path: only digits and whitespace, so the C parser reads every token.
        values = np.fromstring(rle, dtype=np.int64, sep=" ")
        if values.size and values.max() == _INT64_MAX:  # fromstring saturates on overflow
            return None, ["RLE contains an integer too large for int64"]
        return values, []
    bad = []
    for match in _BAD_TOKEN.finditer(rle):
        if len(bad) == _MAX_LISTED:
            bad.append("...")
            break
        index = len(rle[: match.start()].split())
        bad.append(f"token {index} {match.group()!r}")
    if bad:
        return None, [f"RLE has non-integer tokens: {', '.join(bad)}"]
    # Only negatives or unusual whitespace got us here; every token is an integer.
    try:
        return np.array(rle.split(), dtype=np.int64), []
    except OverflowError:
        return None, ["RLE contains an integer too large for int64"]


def _first(mask: np.ndarray) -> tuple[int, int]:
    """Index of the first True in a bool [N] array and the number of Trues."""
    hits = np.flatnonzero(mask)
    return int(hits[0]), int(hits.size)


def _more(count: int) -> str:
    return f" (and {count - 1} more)" if count > 1 else ""


def _problems(
    rle: Any, shape: tuple[int, int] | None
) -> tuple[list[str], np.ndarray | None, np.ndarray | None]:
    """All problems of ``rle`` (one per kind) plus starts/lengths int64 [R] when parsed.

    With ``shape=None`` the image-bounds check is skipped.
    """
    where = f" (shape {shape})" if shape is not None else ""
    if _is_empty(rle):
        empty = np.zeros(0, dtype=np.int64)
        return [], empty, empty
    if not isinstance(rle, str):
        kind = type(rle).__name__
        return [f"RLE must be a str (or NaN/None for empty), got {kind} {rle!r}"], None, None
    values, problems = _parse(rle)
    if values is None:
        return [p + where for p in problems], None, None
    if values.size % 2:
        count = values.size
        msg = f"RLE has an odd number of integers ({count}); expected 'start length' pairs"
        return [msg + where], None, None
    starts, lengths = values[0::2], values[1::2]

    def run(j: int) -> str:
        return f"run {j} (start={starts[j]}, length={lengths[j]})"

    bad = starts < 1
    if bad.any():
        j, k = _first(bad)
        problems.append(f"{run(j)}: start < 1, starts are 1-indexed{_more(k)}{where}")
    bad = lengths < 1
    if bad.any():
        j, k = _first(bad)
        problems.append(f"{run(j)}: length < 1{_more(k)}{where}")
    if shape is not None:
        n = shape[0] * shape[1]
        bad = (lengths >= 1) & (lengths > n + 1 - starts)  # end = start+length-1 > n, overflow-free
        if bad.any():
            j, k = _first(bad)
            end = int(starts[j]) + int(lengths[j]) - 1
            problems.append(
                f"{run(j)}: ends at pixel {end}, past the image end {n} = H*W{_more(k)}{where}"
            )
    step = np.diff(starts)
    bad = step < 0
    if bad.any():
        j, k = _first(bad)
        problems.append(
            f"{run(j + 1)} starts before {run(j)}: runs must be sorted ascending{_more(k)}{where}"
        )
    bad = (step >= 0) & (step < lengths[:-1])
    if bad.any():
        j, k = _first(bad)
        problems.append(f"{run(j + 1)} overlaps {run(j)}{_more(k)}{where}")
    if problems:
        return problems, None, None
    return [], starts, lengths


def validate_rle(rle: str | float | None, shape: tuple[int, int]) -> list[str]:
    """Problems that make ``rle`` an invalid encoding of an [H, W] mask; [] when valid.

    One message per kind of problem (bad tokens, odd count, start < 1, length < 1,
    past the image end, unsorted, overlapping), naming the first offending run.
    """
    return _problems(rle, _as_shape(shape))[0]


def decode(rle: str | float | None, shape: tuple[int, int]) -> np.ndarray:
    """Decode a Kaggle RLE string to a uint8 [H, W] mask (1 = foreground).

    NaN, None and "" give an all-zero mask.  Runs may touch (the end of one run
    adjacent to the next start).  Raises ValueError naming the first problem
    (see :func:`validate_rle`).
    """
    h, w = _as_shape(shape)
    problems, starts, lengths = _problems(rle, (h, w))
    if problems:
        raise ValueError(problems[0])
    assert starts is not None and lengths is not None
    n = h * w
    # Alternate background/foreground segments between the run boundaries.
    bounds = np.empty(2 * starts.size + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, n
    bounds[1:-1:2] = starts - 1
    bounds[2:-1:2] = starts - 1 + lengths
    values = np.zeros(bounds.size - 1, dtype=np.uint8)
    values[1::2] = 1
    columns = np.repeat(values, np.diff(bounds)).reshape(w, h)  # Fortran order
    return cv2.transpose(columns)  # C-contiguous [H, W], much faster than numpy here


def rle_area(rle: str | float | None) -> int:
    """Number of foreground pixels of ``rle`` (sum of run lengths) without decoding.

    Raises ValueError for malformed strings; image bounds are not checked.
    """
    problems, _, lengths = _problems(rle, None)
    if problems:
        raise ValueError(problems[0])
    assert lengths is not None
    return int(lengths.sum())


def _check_mask(mask: np.ndarray, ndim: int, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != ndim:
        raise ValueError(f"{what} must be a {ndim}-D array, got shape {mask.shape}")
    return mask


def _join_positive(values: np.ndarray) -> str:
    """``" ".join(map(str, values))`` for positive ints [K], vectorized over digit positions."""
    if values.size == 0:
        return ""
    top = int(values.max())
    width = len(str(top))
    rest = values.astype(np.int32 if top < 2**31 else np.int64)
    chars = np.empty((values.size, width + 1), dtype=np.uint8)  # digits then a space
    chars[:, width] = ord(" ")
    for col in range(width - 1, -1, -1):  # loop over digit positions, not runs
        quotient = rest // 10
        # Leading positions (nothing left to print) become NUL and are deleted below.
        chars[:, col] = (rest - quotient * 10 + ord("0")) * (rest != 0)
        rest = quotient
    return chars.tobytes().translate(None, b"\x00")[:-1].decode("ascii")


def _column_major_u8(mask: np.ndarray) -> np.ndarray:
    """[..., H, W] any dtype -> C-contiguous uint8 0/1 [..., W, H] (the transposed mask)."""
    binary = (mask != 0).view(np.uint8)
    if binary.ndim == 2:  # cv2.transpose is several times faster than a numpy copy
        return cv2.transpose(np.ascontiguousarray(binary))
    return np.ascontiguousarray(binary.swapaxes(-1, -2))


def encode(mask: np.ndarray) -> str:
    """Encode a [H, W] mask (any dtype, nonzero = foreground) as a Kaggle RLE string."""
    mask = _check_mask(mask, 2, "encode: mask [H, W]")
    h, w = mask.shape
    padded = np.zeros(h * w + 2, dtype=np.uint8)
    if h * w:
        padded[1:-1] = _column_major_u8(mask).ravel()
    runs = np.flatnonzero(padded[1:] != padded[:-1]) + 1
    runs[1::2] -= runs[::2]
    return _join_positive(runs)


def encode_batch(masks: np.ndarray) -> list[str]:
    """Encode [N, H, W] masks (nonzero = foreground) to N RLE strings."""
    masks = _check_mask(masks, 3, "encode_batch: masks [N, H, W]")
    count, h, w = masks.shape
    padded = np.zeros((count, h * w + 2), dtype=np.uint8)
    if count * h * w:
        padded[:, 1:-1] = _column_major_u8(masks).reshape(count, h * w)
    rows, cols = np.nonzero(padded[:, 1:] != padded[:, :-1])
    runs = cols + 1
    runs[1::2] -= runs[::2]  # every row has an even number of changes
    bounds = np.searchsorted(rows, np.arange(count + 1)).tolist()
    return [_join_positive(runs[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
