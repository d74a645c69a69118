"""Per-item statistics and the per-item scores of the mean-reduced metrics.

An *item* is one (image, class) mask pair.  :func:`mask_stats` reduces masks
[..., H, W] to three int64 arrays [...] (intersection, predicted area, true area);
every metric is a function of those arrays only, so threshold / min-area tuners
can cache the statistics and score many settings cheaply.

* ``dice``: 2|A∩B| / (|A| + |B|), 1 when both masks are empty.
* ``iou_ap``: TGS Salt metric per item: 1 when both are empty, 0 when exactly one
  is, else the fraction of thresholds t in 0.50, 0.55, ..., 0.95 with IoU > t.
* ``fbeta_from_stats``: (1 + b^2) |A∩B| / (b^2 |B| + |A|) (A predicted, B true), 1 when both are empty.

``METRICS`` / ``get_metric`` map the per-item metrics to these functions; the registry of everything a
competition spec may name (pooled, volume and weighted metrics too) is ``kseg.metrics.registry``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

__all__ = [
    "IOU_THRESHOLDS",
    "METRICS",
    "MetricFn",
    "dice_from_stats",
    "fbeta_from_stats",
    "get_metric",
    "iou_ap_from_stats",
    "mask_stats",
    "per_item_scores",
    "score",
    "score_from_stats",
    "sum_groups",
]

MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

# Rounded so that e.g. 0.8 is exactly the float literal 0.8 (np.arange drifts).
IOU_THRESHOLDS: np.ndarray = np.round(np.arange(0.5, 1.0, 0.05), 2)
IOU_THRESHOLDS.flags.writeable = False


def _as_binary(mask: np.ndarray, name: str) -> np.ndarray:
    """bool view of a 0/1 mask; rejects float masks holding other values (probabilities)."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.floating) and ((mask != 0) & (mask != 1)).any():
        raise ValueError(
            f"{name} is a float array with values other than 0 and 1; threshold probabilities before scoring"
        )
    return mask != 0


def mask_stats(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-item statistics of binary masks [..., H, W] (nonzero = foreground).

    Returns int64 arrays [...]: intersection, predicted area, true area.
    """
    pred_b, true_b = _as_binary(pred, "pred"), _as_binary(true, "true")
    if pred_b.shape != true_b.shape:
        raise ValueError(f"pred shape {pred_b.shape} != true shape {true_b.shape}")
    if pred_b.ndim < 2:
        raise ValueError(f"masks must be [..., H, W] with at least 2 dims, got {pred_b.shape}")
    axes = (-2, -1)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.asarray(np.count_nonzero(mask, axis=axes), dtype=np.int64)

    return count(pred_b & true_b), count(pred_b), count(true_b)


def sum_groups(values: np.ndarray, group: np.ndarray, n_groups: int | None = None, axis: int = 0) -> np.ndarray:
    """``values`` [..., n, ...] summed along ``axis`` within groups: group int [n] in 0..G-1 -> [..., G, ...].

    Keeps the dtype (int64 statistics stay exact); a group without members sums to 0. The grouped reduction
    of per-item statistics (a slide's tiles summed into one whole-slide item), vectorized (``np.add.at``).
    """
    values, group = np.asarray(values), np.asarray(group)
    axis = axis % max(values.ndim, 1)
    if group.ndim != 1 or values.ndim == 0 or group.size != values.shape[axis]:
        raise ValueError(f"sum_groups: {group.shape} group labels for {values.shape} values along axis {axis}")
    if group.size and (not np.issubdtype(group.dtype, np.integer) or group.min() < 0):
        raise ValueError("sum_groups: group labels must be integers >= 0")
    n_groups = (int(group.max()) + 1 if group.size else 0) if n_groups is None else int(n_groups)
    if group.size and group.max() >= n_groups:
        raise ValueError(f"sum_groups: group label {int(group.max())} >= n_groups {n_groups}")
    moved = np.moveaxis(values, axis, 0)
    out = np.zeros((n_groups, *moved.shape[1:]), dtype=values.dtype)
    np.add.at(out, group, moved)
    return np.moveaxis(out, 0, axis)


def _check_stats(
    inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    inter, pred_area, true_area = np.broadcast_arrays(
        np.asarray(inter, dtype=np.int64),
        np.asarray(pred_area, dtype=np.int64),
        np.asarray(true_area, dtype=np.int64),
    )
    if (inter < 0).any() or (inter > np.minimum(pred_area, true_area)).any():
        raise ValueError("inconsistent mask stats: need 0 <= inter <= min(pred_area, true_area)")
    return inter, pred_area, true_area


def dice_from_stats(inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray) -> np.ndarray:
    """Dice per item, float64 [...]: 2*inter / (pred_area + true_area), 1 if both empty."""
    inter, pred_area, true_area = _check_stats(inter, pred_area, true_area)
    total = pred_area + true_area
    out = np.ones(total.shape, dtype=np.float64)
    np.divide(2.0 * inter, total, out=out, where=total > 0)
    return out


def iou_ap_from_stats(inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray) -> np.ndarray:
    """TGS IoU-AP per item, float64 [...]: mean over IOU_THRESHOLDS of (IoU > t).

    Both masks empty scores 1; exactly one empty scores 0 (its IoU is 0).
    """
    inter, pred_area, true_area = _check_stats(inter, pred_area, true_area)
    union = pred_area + true_area - inter
    iou = np.zeros(union.shape, dtype=np.float64)
    np.divide(inter, union, out=iou, where=union > 0)
    out = np.mean(iou[..., None] > IOU_THRESHOLDS, axis=-1)
    return np.where(union == 0, 1.0, out)


def fbeta_from_stats(inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray, beta: float = 1.0) -> np.ndarray:
    """F-beta per item, float64 [...]: (1 + b^2) * inter / (b^2 * true_area + pred_area), 1 if both empty.

    Precision inter / pred_area and recall inter / true_area combined as (1 + b^2) p r / (b^2 p + r);
    beta < 1 weighs precision more (Vesuvius Ink Detection: F0.5). beta = 1 is dice.
    """
    inter, pred_area, true_area = _check_stats(inter, pred_area, true_area)
    b2 = float(beta) ** 2
    total = b2 * true_area + pred_area
    out = np.ones(total.shape, dtype=np.float64)
    np.divide((1.0 + b2) * inter, total, out=out, where=total > 0)
    return out


METRICS: Mapping[str, MetricFn] = MappingProxyType({"dice": dice_from_stats, "iou_ap": iou_ap_from_stats})


def get_metric(name: str) -> MetricFn:
    """The from-stats function registered as ``name``; ValueError lists valid names."""
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown metric {name!r}; valid metrics: {', '.join(sorted(METRICS))}") from None


def score_from_stats(inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray, metric: str) -> float:
    """Mean per-item ``metric`` over all items of the statistics arrays [...]."""
    return _mean(get_metric(metric)(inter, pred_area, true_area))


def per_item_scores(pred: np.ndarray, true: np.ndarray, metric: str) -> np.ndarray:
    """Per-item ``metric`` of binary masks [..., H, W] -> float64 [...]."""
    fn = get_metric(metric)
    return fn(*mask_stats(pred, true))


def score(pred: np.ndarray, true: np.ndarray, metric: str) -> float:
    """Mean per-item ``metric`` over all items (e.g. images x classes) of [..., H, W] masks."""
    return _mean(per_item_scores(pred, true, metric))


def _mean(scores: np.ndarray) -> float:
    if scores.size == 0:
        raise ValueError("cannot score zero items (masks have an empty leading dimension)")
    return float(np.mean(scores))
