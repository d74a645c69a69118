"""Reference RLE codecs written from the competitions' published rules, independent of ``kseg.data.rle``.

Each function is the plainest reading of a published description, kept deliberately different from the
codec's implementation (plain numpy, a loop over runs, no OpenCV), so that a convention bug in the codec fails a
test instead of agreeing with itself:

- column order: "pixels are numbered from top to bottom, then left to right" (Kaggle evaluation pages of
  Severstal, TGS, Clouds, HuBMAP): pixel ``p`` (1-based) is row ``(p-1) % H``, column ``(p-1) // H``.
- row order: pixels numbered left to right, then top to bottom (Carvana's ``train_masks.csv``, SenNet,
  UW-Madison: ``mask.flatten()``): pixel ``p`` is row ``(p-1) // W``, column ``(p-1) % W``. (Contrails:
  column order, ``-`` for an empty mask.)
- relative starts (SIIM-ACR's ``mask_functions.py``): each start is the number of background pixels since the
  end of the previous run (0 for the first pixel); ``-1`` is an empty mask.

``PUBLISHED`` holds each shipped miniature's dialect as its real competition publishes it (our own layouts
use the common Kaggle one); the miniature tests write csvs with these encoders and read them with kseg.
"""

from __future__ import annotations

import numpy as np

PUBLISHED: dict[str, dict] = {
    "carvana": {"order": "row"},  # train_masks.csv row 1 = row 458 of the car, see test_rle_real
    "severstal": {"order": "column"},
    "clouds": {"order": "column"},
    "tgs-salt": {"order": "column"},
    "isbi2012": {"order": "column"},  # our Kaggle-style layout of the ISBI challenge
    "streets": {"order": "column"},  # our own layout
    "airplanes": {"order": "column"},  # our own layout
    "demo": {"order": "column"},  # our own layout
    "uwmgi": {"order": "row"},  # train.csv runs step by the width (rle_real.json UW-Madison rows)
    "contrails": {"order": "column", "empty": "-"},  # evaluation page; labels are .npy, the submission is RLE
    # HuBMAP Hacking the Kidney: "numbered from top to bottom, then left to right" (openai/mle-bench
    # mlebench/competitions/hubmap-kidney-segmentation/description.md), see the hubmap entry of rle_real.json
    "hubmap": {"order": "column"},
}


def _flat(mask: np.ndarray, order: str) -> np.ndarray:
    """Foreground flags int8 [H*W] in pixel-number order ("top to bottom, then left to right" = mask.T)."""
    binary = (np.asarray(mask) != 0).astype(np.int8)
    return binary.T.reshape(-1) if order == "column" else binary.reshape(-1)


def ref_encode(
    mask: np.ndarray, order: str = "column", starts: str = "absolute", base: int = 1, empty: str = ""
) -> str:
    """RLE of a [H, W] mask: run boundaries of the flags in pixel order, written run by run."""
    flags = np.concatenate([[0], _flat(mask, order), [0]])
    edges = np.flatnonzero(np.diff(flags)).tolist()  # 0-based firsts and ends, alternating
    if not edges:
        return empty
    out, end = [], 0
    for first, stop in zip(edges[0::2], edges[1::2], strict=True):
        out += [first - end if starts == "relative" else first + base, stop - first]
        end = stop
    return " ".join(str(v) for v in out)


def ref_decode(
    rle: str, shape: tuple[int, int], order: str = "column", starts: str = "absolute", base: int = 1, empty: str = ""
) -> np.ndarray:
    """uint8 [H, W] mask of an RLE string, run by run into the flat pixel order, then unflattened."""
    h, w = shape
    flat = np.zeros(h * w, dtype=np.uint8)
    if rle and rle.strip() and rle.strip() != empty:
        values = [int(v) for v in rle.split()]
        position = 0
        for start, length in zip(values[0::2], values[1::2], strict=True):
            first = position + start if starts == "relative" else start - base
            flat[first : first + length] = 1
            position = first + length
    return flat.reshape(w, h).T.copy() if order == "column" else flat.reshape(h, w)


def lit_runs(
    rle: str, shape: tuple[int, int], order: str = "column", starts: str = "absolute", base: int = 1
) -> list[list[int]]:
    """[line, first, last] (0-based, inclusive) per run piece: line = row (row order) or column."""
    h, w = shape
    line_len = w if order == "row" else h
    values = [int(v) for v in rle.split()]
    out, position = [], 0
    for start, length in zip(values[0::2], values[1::2], strict=True):
        first = position + start if starts == "relative" else start - base
        p = first
        while p < first + length:
            line, offset = divmod(p, line_len)
            last = min(first + length - 1, (line + 1) * line_len - 1)
            out.append([line, offset, last - line * line_len])
            p = last + 1
        position = first + length
    return out


def published_encoder(name: str):
    """``mask -> str`` in the published dialect of the miniature ``name``."""
    facts = PUBLISHED[name]
    return lambda mask: ref_encode(mask, **facts)
