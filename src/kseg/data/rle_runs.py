"""Fast paths of the RLE codec (:mod:`kseg.data.rle`): a one-pass check of well-formed runs and band-wise painting.

Decoding cost used to be dominated by per-call fixed work on sparse masks (a handful of defects): a full-size
``np.repeat``, a full-image transpose and a dozen validation passes. Here runs are painted band by band: a band
is a stretch of consecutive image lines (columns for column-major dialects, rows for row-major ones) holding
runs; only bands are expanded, and a column band is transposed straight into its slice of the output. Empty
lines between bands cost only the zeroing of the output.

:func:`decode_text` is the decoder's common case: one ``np.fromstring`` and one difference array of the
(start, length) pairs. Runs forming at most ``_MAX_BOXES`` boxes in scan order (Severstal-like defects) are
checked at each box's head and between boxes only, and each box is painted with one slice; anything else
gets the full check and the painting of :func:`paint_runs`.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

__all__ = ["WELL_FORMED_BYTES", "runs_are_valid", "decode_text", "decode_pairs", "paint_runs"]

# Bytes of a well-formed RLE string: ASCII digits and ordinary whitespace.
WELL_FORMED_BYTES = b"0123456789 \t\r\n"

_BAND_GAP = 16  # empty lines tolerated inside one band (fewer, larger cv2 calls)
_MAX_BANDS = 24  # beyond this many bands the mask is painted in fixed chunks instead
_CHUNK_BYTES = 1 << 16  # a band's scratch buffer stays below this (reused by malloc, never page-faulted)
_MAX_BOXES = 32  # masks made of at most this many axis-aligned boxes are painted box by box


def runs_are_valid(first: np.ndarray, lengths: np.ndarray, size: int | None) -> bool:
    """True when 0-based starts ``first`` int64 [R] and ``lengths`` [R] are sorted, disjoint runs inside ``size``.

    The common case in one pass over a few arrays; a False sends the caller to the detailed checks that name
    the problem. ``size=None`` skips the image-end check.
    """
    if first.size == 0:
        return True
    if lengths.min() < 1 or first[0] < 0:
        return False
    if first.size > 1 and not (first[1:] - first[:-1] >= lengths[:-1]).all():  # sorted and disjoint (runs may touch)
        return False
    return size is None or bool(lengths[-1] <= size - first[-1])  # the last run ends last; overflow-free


@functools.cache
def _alternating(size: int) -> np.ndarray:
    """Read-only uint8 [size] 0, 1, 0, 1, ... (the segment values between run bounds)."""
    values = np.zeros(size, dtype=np.uint8)
    values[1::2] = 1
    values.flags.writeable = False
    return values


def _chunks(first: np.ndarray, ends: np.ndarray, line: int, per_chunk: int) -> list[tuple[int, int, int, int]]:
    """(first line, end line, first run, end run) of each stretch to paint, at most ``per_chunk`` lines each.

    Runs ``first..ends-1`` are sorted and disjoint; ``line`` pixels make one line of the flat order. A band
    ends where more than ``_BAND_GAP`` whole lines separate two runs; more than ``_MAX_BANDS`` bands become
    one band over every covered line.
    """
    opens = (np.flatnonzero(first[1:] - ends[:-1] > (_BAND_GAP + 1) * line) + 1).tolist()
    if len(opens) >= _MAX_BANDS:
        opens = []
    edges = [0, *opens, first.size]
    chunks = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):  # loop over bands (bounded), not runs
        lo, hi = int(first[a]) // line, (int(ends[b - 1]) - 1) // line + 1
        if hi - lo <= per_chunk:
            chunks.append((lo, hi, a, b))
            continue
        cuts = np.arange(lo, hi, per_chunk)
        stops = np.minimum(cuts + per_chunk, hi)
        first_run = np.searchsorted(ends[a:b], cuts * line, side="right") + a  # first run reaching the chunk
        end_run = np.searchsorted(first[a:b], stops * line) + a  # first run starting past it
        chunks += zip(cuts.tolist(), stops.tolist(), first_run.tolist(), end_run.tolist(), strict=True)
    return chunks


def _expand(first: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """uint8 [hi - lo] of flat pixels ``lo..hi-1``: 1 inside runs ``first..ends-1`` (sorted, disjoint), clipped."""
    bounds = np.empty(2 * first.size + 2, dtype=np.int64)
    bounds[0], bounds[-1] = lo, hi
    bounds[1:-1:2], bounds[2:-1:2] = first, ends
    bounds[1], bounds[-2] = max(bounds[1], lo), min(bounds[-2], hi)  # only the end runs can stick out
    return np.repeat(_alternating(1 << (bounds.size - 2).bit_length())[: bounds.size - 1], bounds[1:] - bounds[:-1])


def _box_heads(steps: np.ndarray, growth: np.ndarray, line: int) -> list[int] | None:
    """Indices of the runs that open a box, from start ``steps`` and length ``growth`` [R - 1] between
    consecutive runs (a box continues where a run starts one line after the previous, equally long);
    None beyond ``_MAX_BOXES`` boxes."""
    breaks = (steps - line) | growth  # zero exactly where both are zero
    if np.count_nonzero(breaks) >= _MAX_BOXES:
        return None
    return [0, *(np.flatnonzero(breaks) + 1).tolist()]


def _paint_boxes(
    out: np.ndarray, first: np.ndarray, lengths: np.ndarray, line: int, order: str, heads: list[int] | None
) -> bool:
    """Paint runs that form at most ``_MAX_BOXES`` boxes (Severstal-like defects) with one slice each.

    A box is a chain of runs in consecutive lines at the same offset and length, none crossing a line end
    (its runs share the head's offset, so checking the head is enough). Boxes sharing lines (side by side
    across the scan direction) interleave their runs: with ``heads=None`` they are chained again after
    sorting the runs by (length, offset, position). Returns False, painting nothing, otherwise.
    """
    if heads is None:
        offset = first % line
        if (offset + lengths > line).any():  # a run crosses a line end: not boxes
            return False
        by_box = np.lexsort((first, offset, lengths))  # a box's runs become consecutive
        first, lengths = first[by_box], lengths[by_box]
        heads = _box_heads(first[1:] - first[:-1], lengths[1:] - lengths[:-1], line)
        if heads is None:
            return False
    boxes = []
    for a, b in zip(heads, [*heads[1:], first.size], strict=True):  # loop over boxes (at most _MAX_BOXES)
        lo, size = int(first[a]), int(lengths[a])
        offset = lo % line
        if offset + size > line:
            return False
        lines, pixels = slice(lo // line, lo // line + b - a), slice(offset, offset + size)
        boxes.append((pixels, lines) if order == "column" else (lines, pixels))
    for box in boxes:
        out[box] = 1  # row-contiguous writes
    return True


def decode_text(rle: str, base: int, shape: tuple[int, int], order: str) -> np.ndarray | None:
    """:func:`decode_pairs` of a non-blank string of digits and whitespace; None for anything else.

    An integer too large for int64 saturates in ``np.fromstring`` and then fails the bounds check.
    """
    if not rle.isascii() or rle.encode("ascii").translate(None, WELL_FORMED_BYTES):
        return None
    return decode_pairs(np.fromstring(rle, dtype=np.int64, sep=" "), base, shape, order)


@functools.cache
def _chain_steps(line: int, size: int) -> np.ndarray:
    """Read-only int64 [size] line, 0, line, 0, ...: the interleaved steps of a run continuing a box."""
    steps = np.zeros(size, dtype=np.int64)
    steps[0::2] = line
    steps.flags.writeable = False
    return steps


def _box_list(values: np.ndarray, heads: list[int], base: int, line: int) -> list[tuple[int, int, int]] | None:
    """(first pixel, length, lines) of each box opened at ``heads`` when the pairs ``values`` int64 [2R] are valid.

    Inside a box validity follows from its head (runs one line apart, none crossing a line end), so only the
    heads and the gaps between boxes are checked, in a loop over boxes (at most ``_MAX_BOXES``). Returns None
    when a check fails; a head crossing a line end gives [] (valid or not, the caller checks every run).
    """
    boxes, end = [], 0
    for a, b in zip(heads, [*heads[1:], values.size // 2], strict=True):
        lo, size = int(values[2 * a]) - base, int(values[2 * a + 1])
        if size < 1 or lo < end:  # the first start is at least 0; a box starts after the previous one ends
            return None
        if lo % line + size > line:
            return []
        boxes.append((lo, size, b - a))
        end = lo + (b - a - 1) * line + size
    return boxes


def decode_pairs(values: np.ndarray, base: int, shape: tuple[int, int], order: str) -> np.ndarray | None:
    """uint8 [H, W] mask of ``values`` int64 [2R] (start, length pairs, non-negative ``base``-based absolute
    starts) when they are R >= 1 sorted, disjoint runs inside the image; None otherwise (the caller's detailed
    checks then name the problem). One difference array serves the box search and the validity check.
    """
    if values.size < 2 or values.size % 2:
        return None
    h, w = shape
    line = h if order == "column" else w  # pixels per line of the flat order
    steps = np.empty(values.size, dtype=np.int64)  # start and length differences from the previous run,
    steps[:2] = -1  # interleaved; the first run has none and opens a box
    np.subtract(values[2:], values[:-2], out=steps[2:])
    breaks = (steps != _chain_steps(line, 1 << values.size.bit_length())[: values.size]).view(np.uint16)
    heads = None if np.count_nonzero(breaks) > _MAX_BOXES else breaks.nonzero()[0].tolist()
    boxes = [] if heads is None else _box_list(values, heads, base, line)
    if boxes is None or (boxes and boxes[-1][0] + (boxes[-1][2] - 1) * line + boxes[-1][1] > h * w):
        return None
    if boxes:
        out = np.zeros((h, w), dtype=np.uint8)
        for lo, size, lines in boxes:
            rows, pixels = slice(lo // line, lo // line + lines), slice(lo % line, lo % line + size)
            out[(pixels, rows) if order == "column" else (rows, pixels)] = 1  # row-contiguous writes
        return out
    lengths = values[1::2]
    if values[0] < base or lengths.min() < 1 or not (steps[2::2] >= lengths[:-1]).all():
        return None
    if lengths[-1] > h * w - (values[-2] - base):  # the last run ends last; overflow-free
        return None
    return _paint(values[0::2] - base, lengths, shape, order, heads)


def paint_runs(first: np.ndarray, lengths: np.ndarray, shape: tuple[int, int], order: str) -> np.ndarray:
    """C-contiguous uint8 [H, W] mask, 1 inside valid runs (0-based flat starts ``first`` int64 [R], ``lengths`` [R]).

    ``order`` is ``"column"`` (flat index = x * H + y) or ``"row"`` (y * W + x).
    """
    line = shape[0] if order == "column" else shape[1]
    heads = _box_heads(first[1:] - first[:-1], lengths[1:] - lengths[:-1], line) if first.size else None
    return _paint(first, lengths, shape, order, heads)


def _paint(
    first: np.ndarray, lengths: np.ndarray, shape: tuple[int, int], order: str, heads: list[int] | None
) -> np.ndarray:
    """:func:`paint_runs` given the box openings ``heads`` (None: more than ``_MAX_BOXES`` in scan order)."""
    h, w = shape
    out = np.zeros((h, w), dtype=np.uint8)
    if first.size == 0:
        return out
    line = h if order == "column" else w
    if _paint_boxes(out, first, lengths, line, order, heads):
        return out
    ends = first + lengths
    flat = out.reshape(-1)
    for lo, hi, a, b in _chunks(first, ends, line, max(1, _CHUNK_BYTES // line)):
        piece = _expand(first[a:b], ends[a:b], lo * line, hi * line)
        if order == "row":
            flat[lo * line : hi * line] = piece
        else:
            cv2.transpose(piece.reshape(hi - lo, line), dst=out[:, lo:hi])
    return out
