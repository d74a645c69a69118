"""Pseudo-labels from confident test predictions (``kseg predict --pseudo-labels OUT.csv``).

Rule: a pixel is *confident* when its ensemble probability p satisfies ``p > confidence`` or
``p < 1 - confidence`` (float32, at the submission size, before quantization). A test image is kept
when, for EVERY class, the share of confident pixels is ``>= predict.pseudo_min_fraction``.

File format (read by ``kseg.data.dataset.read_pseudo_labels`` when training with
``data.pseudo_labels=OUT.csv``; the images themselves stay in ``<data.root>/<competition.test_images>``):
the competition's *train* csv format (``competition.train``), written by
``kseg.submission.write.TrainCsvWriter``:

- ``single``: ``<id_column>,<rle_column>``, one row per kept image (empty RLE = empty mask);
- ``combined`` / ``image_label``: ``<image><sep><label>,<rle>``, one row per kept image x class;
- ``long``: ``<id_column>,<class_column>,<rle_column>`` with one row per non-empty mask; a kept image
  whose masks are all empty gets one row ``<image>,<first class label>,`` (empty RLE) so it stays listed.

Masks are the submission masks (post-processed with ``postprocess.json``), RLE-encoded at the image's
native size like train.csv (centre-aligned ``geometry.resize_masks`` from the submission size when they differ,
e.g. Clouds 350x525 -> 1400x2100). Rows follow prediction order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kseg.competition import CompetitionSpec
from kseg.data.geometry import resize_masks
from kseg.submission.write import TrainCsvWriter


def check_confidence(confidence: float) -> float:
    """Validate ``--confidence`` (0.5 <= c < 1)."""
    if not 0.5 <= float(confidence) < 1.0:
        raise ValueError(f"--confidence: expected a probability in [0.5, 1), got {confidence}")
    return float(confidence)


def confident_share(probs: torch.Tensor, confidence: float) -> torch.Tensor:
    """Share of confident pixels per class: probs [..., C, H, W] in [0, 1] -> float32 [..., C]."""
    p = probs.float()
    sure = (p > confidence) | (p < 1.0 - confidence)
    return sure.flatten(-2).float().mean(-1)


def is_confident(share: np.ndarray, min_fraction: float) -> bool:
    """Whether every class of one image has at least ``min_fraction`` confident pixels; share [C]."""
    return bool(np.all(np.asarray(share) >= min_fraction))


class PseudoLabelWriter:
    """Keep the confident images' masks in train-csv format (see the module docstring)."""

    def __init__(self, spec: CompetitionSpec, out_path: str | Path, min_fraction: float) -> None:
        if not 0.0 <= min_fraction <= 1.0:
            raise ValueError(f"predict.pseudo_min_fraction: expected a share in [0, 1], got {min_fraction}")
        self.min_fraction = min_fraction
        self.writer = TrainCsvWriter(spec, out_path)
        self.dialect = spec.rle
        self.exclusive = spec.exclusive
        self.kept = 0
        self.seen = 0

    @property
    def path(self) -> Path:
        return self.writer.path

    def add(self, image_id: str, masks: np.ndarray, share: np.ndarray, native_size: tuple[int, int]) -> bool:
        """Write ``masks`` uint8 [C, H, W] (submission size) of a confident image; returns whether kept."""
        self.seen += 1
        if not is_confident(share, self.min_fraction):
            return False
        h, w = int(native_size[0]), int(native_size[1])
        if masks.shape[1:] != (h, w):
            native = resize_masks(np.ascontiguousarray(masks.transpose(1, 2, 0)), (h, w), self.exclusive)
            masks = np.ascontiguousarray(native.transpose(2, 0, 1))
        self.writer.add(image_id, self.dialect.encode_batch(masks))
        self.kept += 1
        return True

    def close(self) -> Path:
        return self.writer.close()

    def abort(self) -> None:
        self.writer.abort()
