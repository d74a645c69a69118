"""kseg.postprocess: the quantize/binarize rule, min-size removal, gates, triplet rule, json IO."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from kseg.postprocess import (
    ClassParams,
    apply_postprocess,
    apply_postprocess_batch,
    binarize,
    components,
    default_params,
    exclusive_candidates,
    load_postprocess,
    quantize,
    remove_small,
    threshold_level,
)


def test_quantize_hand_values_numpy_and_torch_agree():
    p = np.array([0.0, 1.0, 0.5, 0.2, 127.4 / 255, 127.6 / 255, -0.1, 1.3], dtype=np.float32)
    expected = np.array([0, 255, 128, 51, 127, 128, 0, 255], dtype=np.uint8)  # 0.5*255 = 127.5 -> 128 (half-even)
    np.testing.assert_array_equal(quantize(p), expected)
    np.testing.assert_array_equal(quantize(torch.from_numpy(p)), expected)
    assert quantize(p.reshape(2, 4)).shape == (2, 4)
    rng = np.random.default_rng(0)
    x = rng.random((3, 17, 19), dtype=np.float32)
    np.testing.assert_array_equal(quantize(x), quantize(torch.from_numpy(x)))
    np.testing.assert_array_equal(quantize(x.astype(np.float64)), quantize(x))


def test_threshold_level_and_binarize_rule():
    assert [threshold_level(t) for t in (0.0, 0.5, 1.0, 0.3)] == [0, 127, 255, 76]
    q = np.array([0, 1, 76, 77, 127, 128, 254, 255], dtype=np.uint8)
    np.testing.assert_array_equal(binarize(q, 0.5), [0, 0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(binarize(q, 0.3), [0, 0, 0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(binarize(q, 0.0), [0, 1, 1, 1, 1, 1, 1, 1])
    assert not binarize(q, 1.0).any()
    with pytest.raises(TypeError, match="uint8"):
        binarize(q.astype(np.float32), 0.5)


def test_binarize_matches_float_threshold_away_from_the_boundary():
    """q > level(t) agrees with p > t wherever p is more than half a quantization step from t."""
    p = np.linspace(0, 1, 10001, dtype=np.float32)
    q = quantize(p)
    for t in (0.1, 0.3, 0.35, 0.5, 0.65, 0.9):
        far = np.abs(p - t) > 1.0 / 255
        np.testing.assert_array_equal(binarize(q, t)[far], (p > t)[far])


def _kernel_remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """The common Kaggle kernel loop (reference): keep components with area >= min_size."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8))
    out = np.zeros(mask.shape, dtype=bool)
    for i in range(1, n):
        p = labels == i
        if p.sum() >= min_size:
            out[p] = True
    return out


def test_remove_small_hand_made():
    m = np.zeros((6, 8), dtype=bool)
    m[0, 0] = True  # area 1
    m[2, 2] = m[3, 3] = True  # diagonal neighbours: one 8-connected component of area 2
    m[0:2, 5:7] = True  # area 4
    m[3:6, 5:8] = True  # area 9
    np.testing.assert_array_equal(remove_small(m, 0), m)
    np.testing.assert_array_equal(remove_small(m, 2), m & ~(np.arange(48).reshape(6, 8) == 0))
    kept4 = np.zeros_like(m)
    kept4[0:2, 5:7] = kept4[3:6, 5:8] = True
    np.testing.assert_array_equal(remove_small(m, 3), kept4)
    np.testing.assert_array_equal(remove_small(m, 4), kept4)
    only9 = np.zeros_like(m)
    only9[3:6, 5:8] = True
    np.testing.assert_array_equal(remove_small(m, 5), only9)
    assert not remove_small(m, 10).any()


@pytest.mark.parametrize("cut", [0.55, 0.68])  # dense (~30% foreground) and sparse (< 8%) code paths
def test_remove_small_matches_kernel_loop_on_noise(cut):
    rng = np.random.default_rng(3)
    m = cv2.GaussianBlur(rng.random((64, 96)).astype(np.float32), (3, 3), 0) > cut
    assert (m.mean() > 0.2) if cut < 0.6 else (0 < m.mean() < 0.08)
    for s in (2, 3, 5, 8, 20):
        np.testing.assert_array_equal(remove_small(m, s), _kernel_remove_small(m, s))
    labels, areas = components(m)
    np.testing.assert_array_equal(
        areas, np.bincount(labels.ravel(), minlength=areas.size) * (np.arange(areas.size) > 0)
    )


def _blob_map() -> np.ndarray:
    """uint8 [10, 12]: a 3x3 blob of 200 and one pixel of 90; rest 10."""
    q = np.full((10, 12), 10, dtype=np.uint8)
    q[2:5, 2:5] = 200
    q[8, 10] = 90
    return q


def test_apply_postprocess_rules_per_class():
    q = np.stack([_blob_map(), _blob_map()])
    blob = np.zeros((10, 12), dtype=np.uint8)
    blob[2:5, 2:5] = 1
    dot = np.zeros_like(blob)
    dot[8, 10] = 1
    # class 0 at 0.3 keeps the dot, class 1 at 0.5 not: params are applied per class, in order
    out = apply_postprocess(q, [ClassParams(threshold=0.3), ClassParams(threshold=0.5)])
    np.testing.assert_array_equal(out[0], blob | dot)
    np.testing.assert_array_equal(out[1], blob)
    assert out.dtype == np.uint8
    out = apply_postprocess(q, [ClassParams(threshold=0.3, min_size=2), ClassParams(threshold=0.3, min_size=10)])
    np.testing.assert_array_equal(out[0], blob)
    assert not out[1].any()
    # min_area: 9 + 1 = 10 pixels survive at 0.3
    out = apply_postprocess(q, [ClassParams(threshold=0.3, min_area=10), ClassParams(threshold=0.3, min_area=11)])
    np.testing.assert_array_equal(out[0], blob | dot)
    assert not out[1].any()
    # max-prob gate: max q = 200 = p 0.784
    out = apply_postprocess(q, [ClassParams(max_prob_gate=0.78), ClassParams(max_prob_gate=0.79)])
    np.testing.assert_array_equal(out[0], blob)
    assert not out[1].any()


def test_triplet_rule():
    q = np.stack([_blob_map()] * 3)
    blob = np.zeros((10, 12), dtype=np.uint8)
    blob[2:5, 2:5] = 1
    dot = np.zeros_like(blob)
    dot[8, 10] = 1
    params = [
        ClassParams(threshold=0.3, top_threshold=0.7),  # 9 pixels > 0.7: kept, drawn at 0.3 (with the dot)
        ClassParams(threshold=0.3, top_threshold=0.7, min_area=9),  # exactly 9: kept
        ClassParams(threshold=0.3, top_threshold=0.7, min_area=10),  # needs 10 pixels above top: emptied
    ]
    out = apply_postprocess(q, params)
    np.testing.assert_array_equal(out[0], blob | dot)
    np.testing.assert_array_equal(out[1], blob | dot)
    assert not out[2].any()
    # min_area counts top pixels, not surviving ones: 10 survive at 0.3, but only 9 exceed 0.7
    assert not apply_postprocess(q[:1], [ClassParams(threshold=0.3, top_threshold=0.8, min_area=1)]).any()


def test_aux_gate():
    q = np.stack([_blob_map(), _blob_map()])
    params = [ClassParams(aux_gate=0.5), ClassParams(aux_gate=0.5)]
    out = apply_postprocess(q, params, aux=np.array([0.51, 0.49]))
    assert out[0].sum() == 9 and out[1].sum() == 0
    with pytest.raises(ValueError, match="aux"):
        apply_postprocess(q, params)
    # without an aux gate, aux is ignored
    assert apply_postprocess(q, default_params(2), aux=np.array([0.0, 0.0])).sum() == 18


def test_batch_equals_loop_and_shape_errors():
    rng = np.random.default_rng(1)
    q = quantize(rng.random((3, 2, 16, 20), dtype=np.float32) ** 3)
    aux = rng.random((3, 2))
    params = [ClassParams(threshold=0.4, min_size=3), ClassParams(threshold=0.2, aux_gate=0.3)]
    batch = apply_postprocess_batch(q, params, aux)
    for i in range(3):
        np.testing.assert_array_equal(batch[i], apply_postprocess(q[i], params, aux[i]))
    with pytest.raises(ValueError, match="2 class params for 3 channels"):
        apply_postprocess(q[:, 0], params)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        apply_postprocess(q, params)


# Asymmetric probe for exclusive classes: 2 classes x 6 pixels (one row), background = 1 - c0 - c1.
#   px0 c0 .42 c1 .47: both pass their thresholds alone, c1 wins the argmax
#   px1 c0 .455 c1 .455 (issue 14's case): both pass alone, the tie goes to the lower class c0
#   px2 c0 .30 c1 .20, background .50: c1 passes its low threshold alone, the background wins
#   px3 c0 .60 c1 .20: c1 passes alone, c0 wins
#   px4 c0 .25 c1 .40, background .35: c1 wins and passes; c0 fails alone
#   px5 c0 .38 c1 .30, background .32: c0 wins but fails its threshold: no class (c1 passes alone)
PROBE = np.array([[[0.42, 0.455, 0.30, 0.60, 0.25, 0.38]], [[0.47, 0.455, 0.20, 0.20, 0.40, 0.30]]])
PROBE_PARAMS = [ClassParams(threshold=0.4), ClassParams(threshold=0.15)]  # levels 102 and 38


def test_exclusive_candidates_hand_probe():
    q = quantize(PROBE)  # c0 [107 116 76 153 64 97], c1 [120 116 51 51 102 76]
    np.testing.assert_array_equal(q.ravel(), [107, 116, 76, 153, 64, 97, 120, 116, 51, 51, 102, 76])
    cand = exclusive_candidates(q)  # background 28 23 128 51 89 82
    np.testing.assert_array_equal(cand[0, 0], [0, 116, 0, 153, 0, 97])
    np.testing.assert_array_equal(cand[1, 0], [120, 0, 0, 0, 102, 0])
    assert cand.dtype == np.uint8
    # batched [N, C, H, W] = per image; a class beats the background only strictly
    np.testing.assert_array_equal(exclusive_candidates(np.stack([q, q])), np.stack([cand, cand]))
    tie = np.array([[[100]], [[55]]], dtype=np.uint8)  # background 255 - 155 = 100 ties with c0
    assert not exclusive_candidates(tie).any()
    with pytest.raises(ValueError, match="uint8"):
        exclusive_candidates(PROBE)


def test_exclusive_candidates_match_an_argmax_over_background_and_classes():
    rng = np.random.default_rng(3)
    q = (rng.integers(0, 6, (4, 3, 9, 11)) * 25).astype(np.uint8)  # coarse values: many ties, sums past 255
    background = np.clip(255 - q.astype(np.int64).sum(axis=1, keepdims=True), 0, 255)
    winner = np.concatenate([background, q], axis=1).argmax(axis=1)  # 0 = background; first maximum wins
    expected = np.where(winner[:, None] == np.arange(1, 4)[None, :, None, None], q, 0)
    np.testing.assert_array_equal(exclusive_candidates(q), expected)


def test_exclusive_postprocess_differs_from_independent_thresholds():
    q = quantize(PROBE)
    independent = apply_postprocess(q, PROBE_PARAMS)
    np.testing.assert_array_equal(independent[0, 0], [1, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(independent[1, 0], [1, 1, 1, 1, 1, 1])  # every pixel claimed twice or by c1
    exclusive = apply_postprocess(q, PROBE_PARAMS, exclusive=True)
    np.testing.assert_array_equal(exclusive[0, 0], [0, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(exclusive[1, 0], [1, 0, 0, 0, 1, 0])
    assert exclusive.sum(axis=0).max() == 1  # no pixel in two classes
    batch = apply_postprocess_batch(np.stack([q, q]), PROBE_PARAMS, exclusive=True)
    np.testing.assert_array_equal(batch, np.stack([exclusive, exclusive]))


def test_exclusive_min_size_and_gates_see_the_candidates_only():
    # c0 = 0.6 on a row of 6 but 0.25 on the middle 2, where c1 = 0.7 wins: c0's candidates are 2 + 2 pixels
    q = quantize(np.array([[[0.6, 0.6, 0.25, 0.25, 0.6, 0.6]], [[0, 0, 0.7, 0.7, 0, 0]]]))
    params = [ClassParams(threshold=0.2, min_size=3), ClassParams(threshold=0.3)]
    assert apply_postprocess(q, params)[0].sum() == 6  # one component of 6 when thresholded alone
    out = apply_postprocess(q, params, exclusive=True)
    np.testing.assert_array_equal(out[:, 0], [[0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0]])  # pieces of 2 < 3
    # max-prob gate: c1 wins px0 at 0.40 (q 102 > background 77) but loses its max 0.45 at px2 to c0's 0.50
    q = quantize(np.array([[[0.30, 0, 0.50, 0, 0, 0]], [[0.40, 0, 0.45, 0, 0, 0]]]))
    gated = [ClassParams(threshold=0.3), ClassParams(threshold=0.3, max_prob_gate=0.42)]  # gate level 107
    np.testing.assert_array_equal(apply_postprocess(q, gated)[1, 0], [1, 0, 1, 0, 0, 0])  # max 115 passes
    out = apply_postprocess(q, gated, exclusive=True)
    np.testing.assert_array_equal(out[:, 0], [[0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]])  # candidates' max 102
    ungated = apply_postprocess(q, [gated[0], ClassParams(threshold=0.3)], exclusive=True)
    np.testing.assert_array_equal(ungated[1, 0], [1, 0, 0, 0, 0, 0])


def test_exclusive_one_class_keeps_its_threshold():
    # one class trained as softmax (background + class): nothing to exclude, the threshold decides alone;
    # an argmax against the background would drop 90 and 127 (q <= 255 - q) whatever the threshold
    q = np.array([[[90, 127, 128, 200]]], dtype=np.uint8)
    np.testing.assert_array_equal(exclusive_candidates(q), q)
    out = apply_postprocess(q, [ClassParams(threshold=0.3)], exclusive=True)
    np.testing.assert_array_equal(out[0, 0], [1, 1, 1, 1])
    # two classes: the same values lose to the background where it is larger
    two = np.concatenate([q, np.zeros_like(q)])
    np.testing.assert_array_equal(
        apply_postprocess(two, [ClassParams(threshold=0.3)] * 2, exclusive=True)[0, 0], [0, 0, 1, 1]
    )


def test_class_params_validation():
    assert ClassParams(min_size=4.0).min_size == 4
    for kwargs, field in [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": "0.5"}, "threshold"),
        ({"min_size": -1}, "min_size"),
        ({"min_area": 2.5}, "min_area"),
        ({"top_threshold": -0.1}, "top_threshold"),
        ({"aux_gate": True}, "aux_gate"),
    ]:
        with pytest.raises(ValueError, match=field):
            ClassParams(**kwargs)


def test_load_postprocess_round_trip_and_errors(tmp_path):
    path = tmp_path / "postprocess.json"
    params = [ClassParams(0.4, 16, 100, 0.6, 0.0, None), ClassParams(0.35, 0, 5, 0.0, 0.2, 0.8)]
    import dataclasses

    data = {"classes": [{"name": f"c{i}", "params": dataclasses.asdict(p), "scores": {}} for i, p in enumerate(params)]}
    path.write_text(json.dumps(data))
    assert load_postprocess(path) == params
    assert load_postprocess(path, num_classes=2) == params
    with pytest.raises(ValueError, match="2 entries for 3 classes"):
        load_postprocess(path, num_classes=3)

    def bad(content: str, *words: str) -> None:
        path.write_text(content)
        with pytest.raises(ValueError) as e:
            load_postprocess(path)
        for w in (str(path),) + words:
            assert w in str(e.value)

    bad("{not json", "not valid JSON")
    bad(json.dumps({"thresholds": [0.5]}), "classes")
    bad(json.dumps({"classes": [{"params": {"threshold": 2}}]}), "classes[0].params.threshold")
    bad(json.dumps({"classes": [{"params": {}}, {"params": {"min_size": "x"}}]}), "classes[1].params.min_size")
    bad(json.dumps({"classes": [{"params": {"thresh": 0.5}}]}), "classes[0].params.thresh", "unknown")
    bad(json.dumps({"classes": [{"name": "a"}]}), "classes[0].params")
    with pytest.raises(FileNotFoundError):
        load_postprocess(tmp_path / "missing.json")
