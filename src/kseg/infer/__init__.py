"""Inference: fold/model ensembles with TTA, streamed over the test set.

- ``Ensemble`` / ``Ensemble.from_runs``: checkpoints of one or several experiments, averaged (ensemble.py);
- ``predict_images``: yields one ``Prediction`` (uint8 [C, H, W] at the submission size) per test image;
- ``ProbsWriter`` / ``read_probs``: ``--save-probs`` folders; ``PseudoLabelWriter``: ``--pseudo-labels``.
"""

from kseg.infer.checkpoints import find_checkpoints, parse_folds
from kseg.infer.ensemble import Ensemble, Member, resolve_device, tta_proba
from kseg.infer.probs_store import ProbsWriter, read_probs
from kseg.infer.pseudo import PseudoLabelWriter, confident_share, is_confident
from kseg.infer.stream import Prediction, predict_images

__all__ = [
    "Ensemble",
    "Member",
    "Prediction",
    "ProbsWriter",
    "PseudoLabelWriter",
    "confident_share",
    "find_checkpoints",
    "is_confident",
    "parse_folds",
    "predict_images",
    "read_probs",
    "resolve_device",
    "tta_proba",
]
