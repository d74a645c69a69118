"""The competition metric registry: ``competition.metric`` names an entry, ``competition.metric_params`` sets it.

Every metric is a pure numpy function of per-item statistics (an item is one image x class: intersection,
predicted area, true area; ``kseg.metrics.items.mask_stats``), with one of three reductions (``Metric.kind``):

* ``item``: the mean over images of a per-item score (``dice``, ``iou_ap``, ``fbeta``). The tuner sums per-item
  scores per threshold x min-size cell (``kseg.tune.search.ScoreTable``). With tiling (``tile.size > 0``) the
  scored image is the whole slide: its tiles' statistics are summed first (``score_stats(groups=...)``,
  ``kseg.tune.search.GroupedStats``), as the leaderboard scores each test slide's whole mask.
* ``pooled``: intersections and areas summed over all images first, then one score (``global_dice``,
  ``fbeta`` with ``pooled: true``). The tuner sums the statistics per cell (``StatsTable``), still vectorized.
* ``volume``: needs whole 3D cases (``dice_hausdorff``); the tuner builds each case's post-processed volume
  per distinct cell (``kseg.tune.volume``, the slower path, logged as such).

Each class is scored on its own, then the classes are averaged, weighted by ``class_weights`` (default:
equal). Underneath, every metric is a sum of additive statistics ``item_stats(...) -> [..., K]`` and a
``finalize(S [..., K]) -> score [...]``, which is what lets folds be subtracted in the tuner's CV.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from kseg.metrics.items import (
    _check_stats,
    dice_from_stats,
    fbeta_from_stats,
    iou_ap_from_stats,
    mask_stats,
    sum_groups,
)
from kseg.metrics.volume import Hausdorff, case_groups
from kseg.registry import Registry
from kseg.typed import ConfigError, bounded, from_dict

__all__ = ["METRIC_REGISTRY", "Metric", "DiceHausdorff", "FBeta", "GlobalDice", "build_metric"]

Kind = Literal["item", "pooled", "volume"]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 1 where den == 0 (nothing to score counts as perfect)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    out = np.ones(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass(frozen=True)
class Metric:
    """A competition metric; subclasses set ``name`` and ``kind`` and implement the statistics."""

    name: ClassVar[str] = ""
    class_weights: tuple[float, ...] = bounded((), ge=0, note="(one per class; () = equal)")

    @property
    def kind(self) -> Kind:
        return "item"

    def check_classes(self, num_classes: int, key: str = "competition.metric_params") -> None:
        """Raise ``ConfigError`` unless ``class_weights`` is empty or one weight per class with a positive sum."""
        w = self.class_weights
        if w and len(w) != num_classes:
            raise ConfigError(f"{key}.class_weights: {len(w)} weights for {num_classes} classes")
        if w and sum(w) <= 0:
            raise ConfigError(f"{key}.class_weights: {list(w)} sum to 0; give at least one class a weight > 0")

    def class_mean(self, per_class: np.ndarray) -> float:
        """Mean of per-class scores [C], weighted by ``class_weights`` when set."""
        per_class = np.asarray(per_class, dtype=np.float64)
        return float(np.average(per_class, weights=self.class_weights or None))

    def item_scores(self, inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray) -> np.ndarray:
        """Per-item score float64 [...] (``item`` metrics only)."""
        raise TypeError(f"metric {self.name} is not a mean of per-item scores (kind {self.kind})")

    def item_stats(self, inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray) -> np.ndarray:
        """Additive statistics float64 [..., K] of each item; default (score, 1) of an ``item`` metric."""
        s = self.item_scores(inter, pred_area, true_area)
        return np.stack([s, np.ones_like(s)], axis=-1)

    def finalize(self, stats: np.ndarray) -> np.ndarray:
        """Score [...] of statistics summed over images [..., K]; default mean = S[..., 0] / S[..., 1]."""
        stats = np.asarray(stats, dtype=np.float64)
        return _ratio(stats[..., 0], stats[..., 1])

    def case_stats(self, pred: np.ndarray, true: np.ndarray) -> np.ndarray:
        """Statistics [C, K] of one case's masks [Z, C, H, W] (``volume`` metrics only)."""
        raise TypeError(f"metric {self.name} does not score volumes (kind {self.kind})")

    def score_stats(
        self, inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray, groups: np.ndarray | None = None
    ) -> float:
        """The metric over every image x class of statistics [n, C] (not for ``volume`` metrics).

        ``groups`` int [n]: the scored image each row is a part of (a tile's slide, ``kseg.tiling.slide_groups``);
        an ``item`` metric then scores each group once, on its rows' statistics summed (``sum_groups``).
        ``pooled`` metrics sum over every row anyway, so groups change nothing for them.
        """
        if self.kind == "volume":
            raise TypeError(f"metric {self.name} needs whole volumes: use score_masks with the case keys")
        inter, pred_area, true_area = (np.asarray(a) for a in (inter, pred_area, true_area))
        if inter.ndim != 2 or inter.shape[0] == 0:
            raise ValueError(f"metric {self.name}: expected statistics [n, C] with n > 0, got {inter.shape}")
        if groups is not None and self.kind == "item":
            inter, pred_area, true_area = (sum_groups(a, groups) for a in (inter, pred_area, true_area))
        if self.kind == "item" and not self.class_weights:  # the historic mean over image x class
            return float(np.mean(self.item_scores(inter, pred_area, true_area)))
        per_class = self.finalize(self.item_stats(inter, pred_area, true_area).sum(axis=0))
        return self.class_mean(per_class)

    def score_masks(
        self, pred: np.ndarray, true: np.ndarray, case: np.ndarray | None = None, slice_index: np.ndarray | None = None
    ) -> float:
        """The metric of binary masks [n, C, H, W]; ``volume`` metrics need each image's case and slice [n]."""
        return self.score_stats(*mask_stats(pred, true))


@dataclass(frozen=True)
class Dice(Metric):
    """Mean dice over image x class; both masks empty scores 1."""

    name: ClassVar[str] = "dice"

    def item_scores(self, inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray) -> np.ndarray:
        return dice_from_stats(inter, pred_area, true_area)


@dataclass(frozen=True)
class IouAp(Metric):
    """TGS Salt: mean over image x class of the precision over IoU thresholds 0.50..0.95; empty/empty 1."""

    name: ClassVar[str] = "iou_ap"

    def item_scores(self, inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray) -> np.ndarray:
        return iou_ap_from_stats(inter, pred_area, true_area)


@dataclass(frozen=True)
class GlobalDice(Metric):
    """One dice per class over every pixel of the whole set (Contrails): 2 sum(inter) / (sum(pred) + sum(true)).

    Sums over images before dividing; a class with no predicted and no true pixel in the whole set scores 1.
    """

    name: ClassVar[str] = "global_dice"

    @property
    def kind(self) -> Kind:
        return "pooled"

    def item_stats(self, inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray) -> np.ndarray:
        return np.stack(_check_stats(inter, pred_area, true_area), axis=-1).astype(np.float64)

    def finalize(self, stats: np.ndarray) -> np.ndarray:
        stats = np.asarray(stats, dtype=np.float64)
        return _ratio(2.0 * stats[..., 0], stats[..., 1] + stats[..., 2])


@dataclass(frozen=True)
class FBeta(Metric):
    """F-beta over pixels: (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP); empty/empty scores 1.

    ``pooled: false`` (default): per image (a Vesuvius fragment), then the mean over images;
    ``pooled: true``: TP, FP, FN summed over the whole set first (like ``global_dice``).
    """

    name: ClassVar[str] = "fbeta"
    beta: float = bounded(0.5, gt=0)
    pooled: bool = False

    @property
    def kind(self) -> Kind:
        return "pooled" if self.pooled else "item"

    def item_scores(self, inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray) -> np.ndarray:
        return fbeta_from_stats(inter, pred_area, true_area, self.beta)

    def item_stats(self, inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray) -> np.ndarray:
        if not self.pooled:
            return super().item_stats(inter, pred_area, true_area)
        return np.stack(_check_stats(inter, pred_area, true_area), axis=-1).astype(np.float64)

    def finalize(self, stats: np.ndarray) -> np.ndarray:
        if not self.pooled:
            return super().finalize(stats)
        stats = np.asarray(stats, dtype=np.float64)
        b2 = self.beta**2
        return _ratio((1.0 + b2) * stats[..., 0], b2 * stats[..., 2] + stats[..., 1])


@dataclass(frozen=True)
class DiceHausdorff(Metric):
    """UW-Madison GI Tract: ``dice_weight`` x dice + (1 - ``dice_weight``) x (1 - 3D Hausdorff distance).

    Dice: mean over image (slice) x class. Hausdorff: per case x class over the case's volume
    [slices, H, W] (``kseg.metrics.volume.hausdorff_distance``: unit cube, / sqrt(3); one mask empty = 1).
    ``empty``: what an item (a slice for dice, a case volume for Hausdorff) with both masks empty counts:
    ``skip`` (default) leaves it out of the mean, as the competition's host answered (mle-bench's grader,
    after Kaggle discussion 324934); ``one`` scores it 1. A mean over no item scores 1.
    Statistics per item: (dice sum, dice count, 1 - Hausdorff sum, Hausdorff count).
    """

    name: ClassVar[str] = "dice_hausdorff"
    dice_weight: float = bounded(0.4, ge=0, le=1)
    empty: Literal["skip", "one"] = "skip"

    @property
    def kind(self) -> Kind:
        return "volume"

    def item_stats(self, inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray) -> np.ndarray:
        """Dice part [..., 4]: (dice, counted, 0, 0); Hausdorff statistics come from ``volume_stats``."""
        inter, pred_area, true_area = _check_stats(inter, pred_area, true_area)
        dice = dice_from_stats(inter, pred_area, true_area)
        counted = np.ones(dice.shape) if self.empty == "one" else ((pred_area + true_area) > 0).astype(np.float64)
        zero = np.zeros(dice.shape)
        return np.stack([dice * counted, counted, zero, zero], axis=-1)

    def volume_stats(self, pred: np.ndarray, true: np.ndarray | Hausdorff) -> np.ndarray:
        """Hausdorff part [4]: (0, 0, 1 - distance, counted) of one case's volumes [Z, H, W].

        ``true``: the truth volume, or a ``Hausdorff`` prepared on it (the tuner scores many predictions).
        """
        d = (true if isinstance(true, Hausdorff) else Hausdorff(true))(pred)
        if np.isnan(d):  # both empty
            return np.array([0.0, 0.0, 1.0, 1.0]) if self.empty == "one" else np.zeros(4)
        return np.array([0.0, 0.0, 1.0 - d, 1.0])

    def finalize(self, stats: np.ndarray) -> np.ndarray:
        stats = np.asarray(stats, dtype=np.float64)
        dice, hd = _ratio(stats[..., 0], stats[..., 1]), _ratio(stats[..., 2], stats[..., 3])
        return self.dice_weight * dice + (1.0 - self.dice_weight) * hd

    def score_masks(
        self, pred: np.ndarray, true: np.ndarray, case: np.ndarray | None = None, slice_index: np.ndarray | None = None
    ) -> float:
        """The metric of binary masks [n, C, H, W] of slices with their case and slice index [n]."""
        if case is None or slice_index is None:
            raise ValueError(
                "dice_hausdorff scores 3D volumes per case: every slice needs its case and slice index "
                "(competition.volume.pattern with named groups case and slice)"
            )
        pred, true = np.asarray(pred) != 0, np.asarray(true) != 0
        stats = sum(self.case_stats(pred[idx], true[idx]) for _, idx in case_groups(case, slice_index))
        return self.class_mean(self.finalize(stats))

    def case_stats(self, pred: np.ndarray, true: np.ndarray) -> np.ndarray:
        """Statistics [C, 4] of one case: masks [Z, C, H, W] of its slices in slice order."""
        stats = self.item_stats(*mask_stats(pred, true)).sum(axis=0)
        for c in range(pred.shape[1]):
            stats[c] += self.volume_stats(pred[:, c], true[:, c])
        return stats

    def score_stats(
        self, inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray, groups: np.ndarray | None = None
    ) -> float:
        raise TypeError("dice_hausdorff needs whole volumes: use score_masks with each slice's case and slice index")


METRIC_REGISTRY: Registry[type[Metric]] = Registry("metric", case_sensitive=True)
for _cls in (Dice, IouAp, GlobalDice, FBeta, DiceHausdorff):
    METRIC_REGISTRY.register(_cls.name, _cls)


def metric_params(name: str) -> list[str]:
    """The parameter names metric ``name`` accepts."""
    return [f.name for f in dataclasses.fields(METRIC_REGISTRY.get(name))]


def build_metric(
    name: str, params: dict[str, Any] | None = None, num_classes: int | None = None, key: str = "competition"
) -> Metric:
    """The ``Metric`` registered as ``name`` with ``params`` (unknown names and parameters raise ``ConfigError``)."""
    if name not in METRIC_REGISTRY:
        raise ConfigError(METRIC_REGISTRY.unknown(name, f"{key}.metric"))
    cls = METRIC_REGISTRY.get(name)
    params = dict(params or {})
    unknown = sorted(set(params) - set(metric_params(name)))
    if unknown:
        raise ConfigError(
            f"unknown key {key}.metric_params.{unknown[0]} for metric {cls.name}: "
            f"valid parameters are {', '.join(metric_params(name))}"
        )
    metric = from_dict(cls, params, prefix=f"{key}.metric_params")
    if num_classes is not None:
        metric.check_classes(num_classes, f"{key}.metric_params")
    return metric
