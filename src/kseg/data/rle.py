"""Kaggle run-length encoding (RLE): the project's only codec, one parameter set per competition.

A mask is ``"start length start length ..."``; competitions differ in four ways, held by :class:`RleDialect`
(the ``rle:`` block of a competition spec): ``order`` (``column``: top to bottom, then left to right, most
competitions; ``row``: left to right, then top to bottom, Carvana, SenNet, UW-Madison), ``starts``
(``absolute`` pixel numbers from ``base``, sorted; ``relative``: background pixels since the previous run's
end, SIIM-ACR), ``base`` (1 or 0) and ``empty`` (how an empty mask is written: ``""``, ``"-1"``, ``"1 0"``).
Reading also accepts a blank cell (NaN, None, ``""``) as empty; :func:`validate_rle` (the submission check)
reports one when the dialect writes a token. Every check lives in :func:`_problems`: :func:`validate_rle`
returns its findings, :func:`decode` and :func:`rle_area` raise the first one; messages name the dialect.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from kseg.data.rle_runs import WELL_FORMED_BYTES, decode_text, paint_runs, runs_are_valid
from kseg.typed import ConfigError

__all__ = [
    "RleDialect",
    "KAGGLE",
    "encode",
    "encode_batch",
    "decode",
    "validate_rle",
    "rle_area",
    "rle_syntax_problems",
    "union",
]

# A whitespace-delimited token that is not a plain (optionally negative) ASCII integer.
_BAD_TOKEN = re.compile(r"(?<!\S)(?!-?[0-9]+(?!\S))\S+")
_INT64_MAX = np.iinfo(np.int64).max
_MAX_LISTED = 5  # bad tokens quoted per problem message
_EMPTY_TOKENS = ("-1", "1 0", "-")  # empty-mask tokens of real dialects (SIIM, SenNet, Contrails)


@dataclass(frozen=True)
class RleDialect:
    """How one competition writes masks as run lengths (see the module docstring)."""

    order: Literal["column", "row"] = "column"  # column: top to bottom, then left to right
    starts: Literal["absolute", "relative"] = "absolute"  # relative: gap since the previous run's end
    base: int = 1  # number of the first pixel (absolute starts); Kaggle counts from 1
    empty: str = ""  # the string written for an empty mask: '' | '-1' | '1 0' | '-'

    def __post_init__(self) -> None:
        if self.base not in (0, 1):
            raise ConfigError(f"competition.rle.base: {self.base!r} is not one of 0, 1")
        if self.empty != self.empty.strip():
            raise ConfigError(f"competition.rle.empty: {self.empty!r} has leading or trailing whitespace")
        if self.empty:
            values, problems = _parse(self.empty)
            if values is not None and not problems and values.size % 2 == 0:
                lengths = values[1::2]
                if values.size and (lengths >= 1).all() and (values[0::2] >= 0).all():
                    raise ConfigError(f"competition.rle.empty: {self.empty!r} is a non-empty mask in this dialect")

    def describe(self) -> str:
        """Human-readable summary, quoted in error messages."""
        starts = f"absolute {self.base}-based starts" if self.starts == "absolute" else "relative starts"
        return f"RLE dialect {self.order}-major, {starts}, empty mask {self.empty!r}"

    def encode(self, mask: np.ndarray) -> str:
        """Encode a [H, W] mask (nonzero = foreground)."""
        return encode(mask, self)

    def encode_batch(self, masks: np.ndarray) -> list[str]:
        """Encode [N, H, W] masks to N strings."""
        return encode_batch(masks, self)

    def decode(self, rle: str | float | None, shape: tuple[int, int]) -> np.ndarray:
        """Decode to a uint8 [H, W] mask."""
        return decode(rle, shape, self)

    def validate(self, rle: str | float | None, shape: tuple[int, int]) -> list[str]:
        """Problems of ``rle`` as an encoding of an [H, W] mask; [] when valid."""
        return validate_rle(rle, shape, self)

    def area(self, rle: str | float | None) -> int:
        """Foreground pixel count without decoding."""
        return rle_area(rle, self)

    def is_empty(self, rle: object) -> bool:
        """True for a blank cell or this dialect's empty-mask token."""
        return _is_blank(rle) or (bool(self.empty) and isinstance(rle, str) and rle.strip() == self.empty)


KAGGLE = RleDialect()  # the common Kaggle dialect: column-major, absolute 1-based starts, empty mask ''


def _as_shape(shape: Sequence[int]) -> tuple[int, int]:
    """Return ``shape`` as ``(H, W)`` positive ints or raise ValueError."""
    try:
        h, w = (operator.index(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a pair of ints (H, W), got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive (H, W), got {(h, w)}")
    return h, w


def _is_blank(rle: object) -> bool:
    """True for the blank encodings of an empty mask: None, NaN, '' or whitespace only."""
    blank_str = isinstance(rle, str) and not rle.strip()
    return rle is None or blank_str or (isinstance(rle, float) and math.isnan(rle))


def _parse(rle: str) -> tuple[np.ndarray | None, list[str]]:
    """Parse the integers of a non-empty RLE string; returns (int64 [K] or None, problems)."""
    if rle.isascii() and not rle.encode("ascii").translate(None, WELL_FORMED_BYTES):
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


def _run_problems(
    starts: np.ndarray, lengths: np.ndarray, shape: tuple[int, int] | None, dialect: RleDialect
) -> tuple[list[str], np.ndarray]:
    """Problems of parsed runs and their 0-based absolute starts int64 [R]."""
    problems: list[str] = []

    def run(j: int) -> str:
        return f"run {j} (start={starts[j]}, length={lengths[j]})"

    relative = dialect.starts == "relative"
    low = 0 if relative else dialect.base
    bad = starts < low
    if bad.any():
        j, k = _first(bad)
        what = "a relative start (gap) is >= 0" if relative else f"starts are {dialect.base}-indexed"
        problems.append(f"{run(j)}: start < {low}, {what}{_more(k)}")
    bad = lengths < 1
    if bad.any():
        j, k = _first(bad)
        problems.append(f"{run(j)}: length < 1{_more(k)}")
    if relative:
        first = np.cumsum(starts + np.maximum(lengths, 0)) - np.maximum(lengths, 0)
    else:
        first = starts - dialect.base
    if shape is not None:
        n = shape[0] * shape[1]
        bad = (lengths >= 1) & (lengths > n - first)  # 0-based end first+length-1 > n-1, overflow-free
        if bad.any():
            j, k = _first(bad)
            base = 0 if relative else dialect.base  # relative strings count pixels from 0
            end = int(first[j]) + int(lengths[j]) - 1 + base
            hint = " (absolute starts? this dialect expects relative ones)" if relative else ""
            problems.append(
                f"{run(j)}: ends at pixel {end}, past the image end "
                f"{n - 1 + base} = H*W{'' if base else '-1'}{_more(k)}{hint}"
            )
    if not relative:
        step = np.diff(starts)
        bad = step < 0
        if bad.any():
            j, k = _first(bad)
            problems.append(
                f"{run(j + 1)} starts before {run(j)}: runs must be sorted ascending"
                f"{_more(k)} (relative starts? this dialect expects absolute ones)"
            )
        bad = (step >= 0) & (step < lengths[:-1])
        if bad.any():
            j, k = _first(bad)
            problems.append(
                f"{run(j + 1)} overlaps {run(j)}{_more(k)} (relative starts? this dialect expects absolute ones)"
            )
    return problems, first


def _problems(
    rle: Any, shape: tuple[int, int] | None, dialect: RleDialect
) -> tuple[list[str], np.ndarray | None, np.ndarray | None]:
    """All problems of ``rle`` (one per kind) plus 0-based absolute starts/lengths int64 [R] when parsed.

    With ``shape=None`` the image-bounds check is skipped.
    """
    if dialect.is_empty(rle):
        empty = np.zeros(0, dtype=np.int64)
        return [], empty, empty
    where = (f" (shape {shape})" if shape is not None else "") + f" [{dialect.describe()}]"
    if isinstance(rle, str) and rle.strip() in _EMPTY_TOKENS:
        return (
            [
                f"RLE {rle.strip()!r} is how other competitions write an empty mask; this one writes "
                f"{dialect.empty!r}{where}"
            ],
            None,
            None,
        )
    if not isinstance(rle, str):
        kind = type(rle).__name__
        return [f"RLE must be a str (or NaN/None for empty), got {kind} {rle!r}{where}"], None, None
    values, problems = _parse(rle)
    if values is None:
        return [p + where for p in problems], None, None
    if values.size % 2:
        msg = f"RLE has an odd number of integers ({values.size}); expected 'start length' pairs"
        return [msg + where], None, None
    starts, lengths = values[0::2], values[1::2]
    if dialect.starts == "absolute":  # the common case: one quick pass, details only on failure
        first = starts - dialect.base
        if runs_are_valid(first, lengths, None if shape is None else shape[0] * shape[1]):
            return [], first, lengths
    problems, first = _run_problems(starts, lengths, shape, dialect)
    if problems:
        return [p + where for p in problems], None, None
    return [], first, lengths


def validate_rle(rle: str | float | None, shape: tuple[int, int], dialect: RleDialect = KAGGLE) -> list[str]:
    """Problems that make ``rle`` an invalid encoding of an [H, W] mask in ``dialect``; [] when valid.

    One message per kind of problem (bad tokens, odd count, start below the base, length < 1, past the
    image end, unsorted, overlapping), naming the first offending run and the dialect. A blank cell is
    a problem when the dialect writes empty masks with a token (``empty: '-1'``).
    """
    shape = _as_shape(shape)
    if dialect.empty and _is_blank(rle):
        return [f"blank RLE: this competition writes an empty mask as {dialect.empty!r} [{dialect.describe()}]"]
    return _problems(rle, shape, dialect)[0]


def decode(rle: str | float | None, shape: tuple[int, int], dialect: RleDialect = KAGGLE) -> np.ndarray:
    """Decode an RLE string in ``dialect`` to a uint8 [H, W] mask (1 = foreground).

    A blank cell and the dialect's empty token give an all-zero mask. Runs may touch. Raises ValueError
    naming the first problem (see :func:`validate_rle`).
    """
    h, w = _as_shape(shape)
    if isinstance(rle, str) and dialect.starts == "absolute" and not dialect.is_empty(rle):  # the common case
        mask = decode_text(rle, dialect.base, (h, w), dialect.order)
        if mask is not None:
            return mask
    problems, first, lengths = _problems(rle, (h, w), dialect)
    if problems:
        raise ValueError(problems[0])
    assert first is not None and lengths is not None
    return paint_runs(first, lengths, (h, w), dialect.order)


def rle_area(rle: str | float | None, dialect: RleDialect = KAGGLE) -> int:
    """Number of foreground pixels of ``rle`` (sum of run lengths) without decoding.

    Raises ValueError for malformed strings; image bounds are not checked.
    """
    problems, _, lengths = _problems(rle, None, dialect)
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
    """``" ".join(map(str, values))`` for non-negative ints [K], vectorized over digit positions."""
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
    if (values == 0).any():  # a 0 (relative start, 0-based start) prints as one '0', not as nothing
        chars[values == 0, width - 1] = ord("0")
    return chars.tobytes().translate(None, b"\x00")[:-1].decode("ascii")


def _ordered_u8(mask: np.ndarray, dialect: RleDialect) -> np.ndarray:
    """[..., H, W] any dtype -> C-contiguous uint8 0/1 laid out in the dialect's pixel order."""
    binary = (mask != 0).view(np.uint8)
    if dialect.order == "row":
        return np.ascontiguousarray(binary)
    if binary.ndim == 2:  # cv2.transpose is several times faster than a numpy copy
        return cv2.transpose(np.ascontiguousarray(binary))
    return np.ascontiguousarray(binary.swapaxes(-1, -2))


def _format_runs(runs: np.ndarray, dialect: RleDialect) -> str:
    """0-based (start, length) pairs flattened [2R] -> the dialect's string."""
    if runs.size == 0:
        return dialect.empty
    runs = runs.copy()
    if dialect.starts == "relative":
        ends = runs[0::2] + runs[1::2]
        runs[2::2] -= ends[:-1]
    else:
        runs[0::2] += dialect.base
    return _join_positive(runs)


def encode(mask: np.ndarray, dialect: RleDialect = KAGGLE) -> str:
    """Encode a [H, W] mask (any dtype, nonzero = foreground) as an RLE string in ``dialect``."""
    mask = _check_mask(mask, 2, "encode: mask [H, W]")
    h, w = mask.shape
    padded = np.zeros(h * w + 2, dtype=np.uint8)
    if h * w:
        padded[1:-1] = _ordered_u8(mask, dialect).ravel()
    runs = np.flatnonzero(padded[1:] != padded[:-1])  # 0-based starts and ends, alternating
    runs[1::2] -= runs[::2]
    return _format_runs(runs, dialect)


def encode_batch(masks: np.ndarray, dialect: RleDialect = KAGGLE) -> list[str]:
    """Encode [N, H, W] masks (nonzero = foreground) to N RLE strings in ``dialect``."""
    masks = _check_mask(masks, 3, "encode_batch: masks [N, H, W]")
    count, h, w = masks.shape
    padded = np.zeros((count, h * w + 2), dtype=np.uint8)
    if count * h * w:
        padded[:, 1:-1] = _ordered_u8(masks, dialect).reshape(count, h * w)
    rows, runs = np.divmod(np.flatnonzero(padded[:, 1:] != padded[:, :-1]), h * w + 1)  # 2-D nonzero is slower
    runs[1::2] -= runs[::2]  # every row has an even number of changes
    bounds = np.searchsorted(rows, np.arange(count + 1)).tolist()
    return [_format_runs(runs[a:b], dialect) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def rle_syntax_problems(rle: str | float | None, dialect: RleDialect = KAGGLE) -> list[str]:
    """Problems of ``rle`` in ``dialect`` that need no image size (tokens, pairs, starts, order); [] if none."""
    return _problems(rle, None, dialect)[0]


def union(rles: Sequence[str | float | None], dialect: RleDialect = KAGGLE) -> str:
    """One RLE of the union of several masks of one image (one row per object instance: SIIM, Airbus).

    Works on the runs alone (no image size needed): runs are made absolute, sorted and merged where they
    overlap or touch. Raises ValueError naming the first malformed string.
    """
    starts, ends = [], []
    for k, rle in enumerate(rles):
        problems, first, lengths = _problems(rle, None, dialect)
        if problems:
            raise ValueError(f"instance {k}: {problems[0]}")
        assert first is not None and lengths is not None
        starts.append(first)
        ends.append(first + lengths)
    lo = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    hi = np.concatenate(ends) if ends else np.zeros(0, np.int64)
    if lo.size == 0:
        return dialect.empty
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], np.maximum.accumulate(hi[order])
    new = np.ones(lo.size, dtype=bool)
    new[1:] = lo[1:] > hi[:-1]  # a run starting after every earlier end opens a new merged run
    last = np.append(new[1:], True)  # hi is a running max: a merged run ends at its last member's hi
    merged_lo, merged_hi = lo[new], hi[last]
    runs = np.empty(2 * merged_lo.size, dtype=np.int64)
    runs[0::2], runs[1::2] = merged_lo, merged_hi - merged_lo
    return _format_runs(runs, dialect)
