"""Competition metrics: per-item statistics (``items``), the metric registry (``registry``), 3D Hausdorff (``volume``).

``competition.metric`` names an entry of ``METRIC_REGISTRY`` and ``competition.metric_params`` its parameters;
``build_metric`` turns them into a ``Metric``, a pure function of numpy arrays that training validation,
OOF scoring and ``kseg tune`` share (see ``kseg.metrics.registry`` for the reductions).
"""

from kseg.metrics.items import (
    IOU_THRESHOLDS,
    METRICS,
    MetricFn,
    dice_from_stats,
    fbeta_from_stats,
    get_metric,
    iou_ap_from_stats,
    mask_stats,
    per_item_scores,
    score,
    score_from_stats,
    sum_groups,
)
from kseg.metrics.registry import (
    METRIC_REGISTRY,
    DiceHausdorff,
    FBeta,
    GlobalDice,
    Metric,
    build_metric,
)
from kseg.metrics.volume import case_groups, hausdorff_distance

__all__ = [
    "IOU_THRESHOLDS",
    "METRICS",
    "METRIC_REGISTRY",
    "DiceHausdorff",
    "FBeta",
    "GlobalDice",
    "Metric",
    "MetricFn",
    "build_metric",
    "case_groups",
    "dice_from_stats",
    "fbeta_from_stats",
    "get_metric",
    "hausdorff_distance",
    "iou_ap_from_stats",
    "mask_stats",
    "per_item_scores",
    "score",
    "score_from_stats",
    "sum_groups",
]
