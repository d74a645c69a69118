"""kseg.metrics.registry: every competition metric against values computed by hand, empty cases, params, spec."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import fbeta_score

from kseg.competition import CompetitionSpec
from kseg.metrics import METRIC_REGISTRY, build_metric, mask_stats
from kseg.typed import ConfigError, from_dict


def masks(*rows: list[int], width: int = 10) -> np.ndarray:
    """bool [n, 1, 1, width]: one single-class image per row, with the listed pixels set."""
    out = np.zeros((len(rows), 1, 1, width), dtype=bool)
    for i, on in enumerate(rows):
        out[i, 0, 0, on] = True
    return out


EMPTY: list[int] = []
P4 = [0, 1, 2, 3]  # 4 px
T6 = [1, 2, 3, 4, 5, 6]  # 6 px, intersection with P4: 3

# (pred, true) of the four empty / non-empty combinations and a partial overlap
CASES = {"both_empty": (EMPTY, EMPTY), "pred_empty": (EMPTY, T6), "true_empty": (P4, EMPTY), "overlap": (P4, T6)}


def one(metric: str, pred: list[int], true: list[int], **params) -> float:
    return build_metric(metric, params).score_masks(masks(pred), masks(true))


@pytest.mark.parametrize(
    ("case", "dice", "fb05", "fb2"),
    [
        ("both_empty", 1.0, 1.0, 1.0),
        ("pred_empty", 0.0, 0.0, 0.0),
        ("true_empty", 0.0, 0.0, 0.0),
        # p = 3/4, r = 3/6: F_b = (1 + b^2) p r / (b^2 p + r)
        ("overlap", 0.6, 1.25 * 0.375 / (0.25 * 0.75 + 0.5), 5 * 0.375 / (4 * 0.75 + 0.5)),
    ],
)
def test_item_metrics_every_empty_combination(case: str, dice: float, fb05: float, fb2: float) -> None:
    pred, true = CASES[case]
    assert one("dice", pred, true) == pytest.approx(dice)
    assert one("global_dice", pred, true) == pytest.approx(dice)  # one image: global = per image
    assert one("fbeta", pred, true, beta=0.5) == pytest.approx(fb05)
    assert one("fbeta", pred, true, beta=1.0) == pytest.approx(dice)  # F1 is dice
    assert one("fbeta", pred, true, beta=2.0) == pytest.approx(fb2)
    assert one("fbeta", pred, true, beta=0.5, pooled=True) == pytest.approx(fb05)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_fbeta_matches_sklearn_on_random_pixels(beta: float) -> None:
    rng = np.random.default_rng(3)
    pred, true = rng.random((5, 1, 8, 9)) < 0.4, rng.random((5, 1, 8, 9)) < 0.3
    per_image = [fbeta_score(true[i].ravel(), pred[i].ravel(), beta=beta) for i in range(5)]
    assert build_metric("fbeta", {"beta": beta}).score_masks(pred, true) == pytest.approx(np.mean(per_image))
    pooled = fbeta_score(true.ravel(), pred.ravel(), beta=beta)
    assert build_metric("fbeta", {"beta": beta, "pooled": True}).score_masks(pred, true) == pytest.approx(pooled)


def test_global_dice_sums_before_dividing() -> None:
    pred = masks(P4, EMPTY, [7, 8])  # image 3: 2 false-positive pixels on an empty truth
    true = masks(T6, EMPTY, EMPTY)
    # per image: 0.6, 1, 0 -> mean 0.5333; global: 2 * 3 / (6 + 6) = 0.5
    assert build_metric("dice").score_masks(pred, true) == pytest.approx(1.6 / 3)
    assert build_metric("global_dice").score_masks(pred, true) == pytest.approx(0.5)
    nothing = masks(EMPTY, EMPTY)
    assert build_metric("global_dice").score_masks(nothing, nothing) == 1.0  # the whole set empty
    assert build_metric("global_dice").score_masks(nothing, masks(T6, EMPTY)) == 0.0
    assert build_metric("global_dice").score_masks(masks(P4, EMPTY), nothing) == 0.0


def test_class_weights_weigh_the_per_class_means() -> None:
    pred = np.concatenate([masks(EMPTY, P4), masks(P4, EMPTY)], axis=1)  # [2 images, 2 classes, 1, 10]
    true = np.concatenate([masks(EMPTY, P4), masks(T6, EMPTY)], axis=1)
    # class 0: images 1.0, 1.0 -> 1.0; class 1: 0.6, 1.0 -> 0.8
    assert build_metric("dice").score_masks(pred, true) == pytest.approx(0.9)
    assert build_metric("dice", {"class_weights": [3, 1]}).score_masks(pred, true) == pytest.approx(3.8 / 4)
    assert build_metric("dice", {"class_weights": [0, 1]}).score_masks(pred, true) == pytest.approx(0.8)
    # global dice, class 0: everything empty -> 1; class 1: 2*3 / (4 + 6) = 0.6
    assert build_metric("global_dice", {"class_weights": [1, 3]}).score_masks(pred, true) == pytest.approx(2.8 / 4)
    stats = mask_stats(pred, true)
    assert build_metric("dice").score_stats(*stats) == pytest.approx(0.9)


def test_groups_score_each_slide_once_on_its_summed_tiles() -> None:
    """HuBMAP: the leaderboard is the mean over test slides of the whole-slide dice; with tiles as rows, each
    slide's tile statistics are summed first. Slide A: 3 empty/empty tiles and one of dice 0.2; slide B: one tile of
    dice 0.8. Mean over tiles (1 + 1 + 1 + 0.2 + 0.8) / 5 = 0.8; mean over slides (0.2 + 0.8) / 2 = 0.5."""
    inter, pred, true = (np.array(v)[:, None] for v in ([0, 0, 0, 1, 4], [0, 0, 0, 5, 5], [0, 0, 0, 5, 5]))
    groups = np.array([0, 0, 0, 0, 1])  # tiles of A, A, A, A, B
    dice = build_metric("dice")
    assert dice.score_stats(inter, pred, true) == pytest.approx(0.8)
    assert dice.score_stats(inter, pred, true, groups=groups) == pytest.approx(0.5)
    # two non-empty tiles of one slide are summed, not averaged: A = tiles (1, 5, 5) + (3, 3, 5) = 2*4 / (8 + 10)
    inter, pred, true = (np.array(v)[:, None] for v in ([1, 3, 4], [5, 3, 5], [5, 5, 5]))
    per_slide = (2 * 4 / 18 + 0.8) / 2
    assert dice.score_stats(inter, pred, true, groups=np.array([0, 0, 1])) == pytest.approx(per_slide)
    assert dice.score_stats(inter, pred, true) == pytest.approx((0.2 + 0.75 + 0.8) / 3)
    weighted = build_metric("fbeta", {"beta": 1.0, "class_weights": [2]})  # the class-weighted path, beta 1 = dice
    assert weighted.score_stats(inter, pred, true, groups=np.array([0, 0, 1])) == pytest.approx(per_slide)
    # pooled metrics sum every row anyway: groups change nothing
    pooled = build_metric("global_dice")
    assert pooled.score_stats(inter, pred, true, groups=np.array([0, 0, 1])) == pooled.score_stats(inter, pred, true)
    assert pooled.score_stats(inter, pred, true) == pytest.approx(2 * 8 / 28)


def test_unweighted_item_metrics_are_the_historic_mean_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    pred, true = rng.random((7, 3, 6, 5)) < 0.5, rng.random((7, 3, 6, 5)) < 0.4
    from kseg.metrics import score

    for name in ("dice", "iou_ap"):
        assert build_metric(name).score_masks(pred, true) == score(pred, true, name)


def test_registry_names_and_errors() -> None:
    assert METRIC_REGISTRY.choices() == ["dice", "iou_ap", "global_dice", "fbeta", "dice_hausdorff"]
    with pytest.raises(ConfigError, match=r"competition.metric: 'f1' is not one of dice, iou_ap, global_dice"):
        build_metric("f1")
    with pytest.raises(ConfigError, match="did you mean global_dice"):
        build_metric("globaldice")
    with pytest.raises(ConfigError, match=r"metric_params.bta for metric fbeta: valid parameters are .*beta"):
        build_metric("fbeta", {"bta": 0.5})
    with pytest.raises(ConfigError, match=r"metric_params.beta: -1.0 is out of range"):
        build_metric("fbeta", {"beta": -1})
    with pytest.raises(ConfigError, match="2 weights for 3 classes"):
        build_metric("dice", {"class_weights": [1, 2]}, num_classes=3)
    with pytest.raises(ConfigError, match="sum to 0"):
        build_metric("dice", {"class_weights": [0, 0]}, num_classes=2)
    with pytest.raises(TypeError, match="needs whole volumes"):
        build_metric("dice_hausdorff").score_stats(*mask_stats(masks(P4), masks(T6)))


def test_spec_metric_key_and_params_from_yaml() -> None:
    spec = from_dict(
        CompetitionSpec,
        {"name": "ink", "classes": ["ink"], "metric": "fbeta", "metric_params": {"beta": 0.5}},
    )
    assert spec.scorer == build_metric("fbeta", {"beta": 0.5}) and spec.scorer.kind == "item"
    with pytest.raises(ConfigError, match="metric: 'f05' is not one of dice, iou_ap"):
        from_dict(CompetitionSpec, {"name": "x", "classes": ["a"], "metric": "f05"})
    with pytest.raises(ConfigError, match="unknown key competition.metric_params.alpha"):
        from_dict(CompetitionSpec, {"name": "x", "classes": ["a"], "metric": "fbeta", "metric_params": {"alpha": 1}})
    with pytest.raises(ConfigError, match="class_weights: 2 weights for 1 classes"):
        CompetitionSpec(name="x", classes=("a",), metric_params={"class_weights": [1, 2]})
    with pytest.raises(ConfigError, match="dice_hausdorff scores 3D volumes per case, but competition.volume"):
        CompetitionSpec(name="uw", classes=("a",), metric="dice_hausdorff")
    uw = from_dict(
        CompetitionSpec,
        {
            "name": "uw",
            "classes": ["a"],
            "metric": "dice_hausdorff",
            "volume": {"pattern": r"^(?P<case>case\d+_day\d+)_slice_(?P<slice>\d+)$"},
        },
    )
    assert uw.scorer.kind == "volume" and math.isclose(uw.scorer.dice_weight, 0.4)
