"""kseg tune: vectorized grid search vs a brute-force reference, OOF sets and ensembling, truth, CLI.

The grid, the score table and the per-cell statistics have their own tests (test_tune_grid.py,
test_tune_search.py, test_tune_stats.py)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from kseg.cli import main
from kseg.config import config_from_dict, config_to_dict
from kseg.data.rle import KAGGLE, decode, encode
from kseg.metrics import per_item_scores
from kseg.postprocess import ClassParams, apply_postprocess_batch, default_params, load_postprocess, quantize
from kseg.train.truth import TruthTable
from kseg.tune.oof_set import find_folds, load_oof
from kseg.tune.report import grid_frame, postprocess_dict
from kseg.tune.run import tune

H, W, C = 20, 24, 2
GRID = {
    "thresholds": [0.3, 0.5, 0.7],
    "min_sizes": [0, 3, 10],
    "min_areas": [0, 15],
    "max_prob_gates": [0.0, 0.9],
    "aux_gates": [0.0, 0.5],
    "triplet": True,
    "top_thresholds": [0.8],
}
AXES = ("threshold", "min_size", "min_area", "max_prob_gate", "aux_gate", "top_threshold")


def _random_case(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """truth uint8 [n, C, H, W], OOF probs uint8 [n, C, H, W], aux uint8 [n, C]: blobs + noise."""
    truth = np.zeros((n, C, H, W), dtype=np.uint8)
    for i, c in itertools.product(range(n), range(C)):
        if rng.random() < 0.4:
            continue
        for _ in range(int(rng.integers(1, 4))):
            y, x = int(rng.integers(0, H)), int(rng.integers(0, W))
            cv2.circle(truth[i, c], (x, y), int(rng.integers(0, 4)), 1, -1)
    p = np.stack([[cv2.GaussianBlur(m.astype(np.float32), (5, 5), 1.2) for m in img] for img in truth])
    p = p * rng.uniform(0.5, 1.0, (n, C, 1, 1)) + rng.random((n, C, H, W)) ** 5 * 0.75
    spur = rng.random((n, C, H, W)) < 0.01  # confident false-positive specks
    p = np.where(spur, rng.uniform(0.6, 1.0, p.shape), p)
    probs = quantize(np.clip(p, 0, 1).astype(np.float32))
    present = truth.reshape(n, C, -1).any(-1)
    aux = quantize(np.clip(present * 0.45 + rng.random((n, C)) * 0.55, 0, 1))
    return truth, probs, aux


def _write_competition(
    root: Path, truth: np.ndarray, metric: str, n_folds: int, seed: int = 0, mode: str = "multilabel"
) -> tuple:
    """A tiny combined-format competition + OOF of experiment 'exp' in 3 folds (rows shuffled)."""
    n = truth.shape[0]
    ids = [f"img{i:03d}" for i in range(n)]
    rows = [
        {"ImageId_ClassId": f"{ids[i]}_{c + 1}", "EncodedPixels": encode(truth[i, c])}
        for i in range(n)
        for c in range(C)
    ]
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    spec = {
        "name": "tiny",
        "classes": ["a", "b"],
        "mode": mode,
        "metric": metric,
        "image_size": [H, W],
        "submission_size": [H, W],
        "train": {"format": "combined", "id_column": "ImageId_ClassId"},
        "submission": {"format": "combined", "id_column": "ImageId_ClassId"},
    }
    cfg = config_from_dict(
        {
            "competition": spec,
            "name": "exp",
            "runs_dir": str(root / "runs"),
            "data": {"root": str(root)},
            "tune": dict(GRID, chunk_size=3),
        }
    )
    folds = np.random.default_rng(seed).permutation(np.arange(n) % n_folds)
    return cfg, ids, folds


def _write_oof(
    cfg, exp: str, ids: list[str], folds: np.ndarray, probs: np.ndarray, aux: np.ndarray | None, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    for k in np.unique(folds):
        rows = rng.permutation(np.flatnonzero(folds == k))
        d = Path(cfg.runs_dir) / exp / f"fold{k}"
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "oof.npy", probs[rows])
        pd.DataFrame({"image_id": [ids[r] for r in rows]}).to_csv(d / "oof_ids.csv", index=False)
        if aux is not None:
            np.save(d / "oof_aux.npy", aux[rows])


def _strictness(p: ClassParams) -> tuple:
    """The tie order's key, written from its definition: larger = more conservative, threshold first."""
    top = -1.0 if p.top_threshold is None else p.top_threshold
    return (p.threshold, p.min_size, p.min_area, p.max_prob_gate, p.aux_gate, top)


def _reference_best(sums: np.ndarray, count: int, cells: list[ClassParams]) -> int:
    """Tied cells (within 1e-9 * count of the max): the default ClassParams() if tied, else the strictest."""
    tied = [i for i in np.flatnonzero(sums >= sums.max() - 1e-9 * count)]
    for i in tied:
        if cells[i] == ClassParams():
            return int(i)
    return int(max(tied, key=lambda i: _strictness(cells[i])))


def _softmax_like(probs: np.ndarray) -> np.ndarray:
    """uint8 [n, C, H, W] class maps rescaled so that they sum to at most 1 per pixel (room for background)."""
    p = probs.astype(np.float32) / 255
    return quantize(p / np.maximum(1.0, p.sum(axis=1, keepdims=True) / 0.95))


@pytest.mark.parametrize("metric, exclusive", [("dice", False), ("iou_ap", False), ("dice", True)])
def test_grid_search_matches_brute_force(tmp_path, metric, exclusive):
    rng = np.random.default_rng(7)
    n = 14
    truth, probs, aux = _random_case(rng, n)
    mode = "multiclass" if exclusive else "multilabel"
    if exclusive:
        probs = _softmax_like(probs)
    cfg, ids, folds = _write_competition(tmp_path, truth, metric, n_folds=3, mode=mode)
    assert cfg.competition.exclusive is exclusive  # multiclass implies exclusive
    _write_oof(cfg, "exp", ids, folds, probs, aux, seed=1)

    result = tune(cfg, progress=False)

    # brute force: every cell through apply_postprocess + kseg.metrics, one cell at a time
    cells = [
        ClassParams(**dict(zip(AXES, combo, strict=True)))
        for combo in itertools.product(
            GRID["thresholds"],
            GRID["min_sizes"],
            GRID["min_areas"],
            GRID["max_prob_gates"],
            GRID["aux_gates"],
            [None] + GRID["top_thresholds"],
        )
    ]

    def scored(params: list[ClassParams], rule: bool) -> np.ndarray:
        return per_item_scores(apply_postprocess_batch(probs, params, aux / 255.0, exclusive=rule), truth, metric)

    scores = np.stack([scored([p] * C, exclusive) for p in cells])  # [cells, n, C]
    default = scored(default_params(C), exclusive)  # [n, C]
    if exclusive:  # a probe where the rule matters: at threshold 0.3 independent thresholds score otherwise
        low = [ClassParams(threshold=0.3)] * C
        assert np.abs(scored(low, True) - scored(low, False)).max() > 0.05
    table = grid_frame(result)
    assert len(table) == C * len(cells)
    for c in range(C):
        means = scores[:, :, c].mean(axis=1)
        np.testing.assert_allclose(table[table["class"] == ["a", "b"][c]]["score"].to_numpy(), means, atol=1e-6)
        best = _reference_best(scores[:, :, c].sum(axis=1), n, cells)
        assert result.params[c] == cells[best]
        ch = result.choices[c]
        assert ch.score_tuned == pytest.approx(means[best], abs=1e-12)
        assert ch.score_default == pytest.approx(default[:, c].mean(), abs=1e-12)
        held = 0.0
        for k in range(3):
            train, test = folds != k, folds == k
            b = _reference_best(scores[:, train, c].sum(axis=1), int(train.sum()), cells)
            held += scores[b, test, c].sum()
        assert ch.score_cv == pytest.approx(held / n, abs=1e-12)
    assert result.score_tuned == pytest.approx(np.mean([ch.score_tuned for ch in result.choices]))
    assert postprocess_dict(result, "exp")["exclusive"] is exclusive  # recorded next to the tuned parameters
    # the probe is not degenerate: tuning changes something and beats the default
    assert result.score_tuned > result.score_default
    assert any(p != ClassParams() for p in result.params)
    assert len({p for p in result.params}) == C or result.params[0] != ClassParams()


def test_chunk_size_does_not_change_results(tmp_path):
    truth, probs, aux = _random_case(np.random.default_rng(11), 10)
    cfg, ids, folds = _write_competition(tmp_path, truth, "dice", n_folds=2)
    _write_oof(cfg, "exp", ids, folds, probs, aux, seed=2)
    a = tune(cfg.replace(tune=cfg.tune.__class__(**{**config_to_dict(cfg)["tune"], "chunk_size": 1})), progress=False)
    b = tune(cfg.replace(tune=cfg.tune.__class__(**{**config_to_dict(cfg)["tune"], "chunk_size": 64})), progress=False)
    assert a.params == b.params
    np.testing.assert_allclose(a.table.sums, b.table.sums, atol=1e-9)
    np.testing.assert_array_equal(a.table.counts, b.table.counts)


def test_single_fold_has_no_cv(tmp_path):
    truth, probs, aux = _random_case(np.random.default_rng(5), 6)
    cfg, ids, _ = _write_competition(tmp_path, truth, "dice", n_folds=1)
    _write_oof(cfg, "exp", ids, np.zeros(6, dtype=int), probs, aux, seed=0)
    result = tune(cfg, progress=False)
    assert np.isnan(result.score_cv) and not np.isnan(result.score_tuned)


def test_experiments_are_averaged_by_image_id(tmp_path):
    rng = np.random.default_rng(3)
    truth, p1, a1 = _random_case(rng, 8)
    _, p2, a2 = _random_case(rng, 8)
    cfg, ids, folds = _write_competition(tmp_path, truth, "dice", n_folds=2)
    _write_oof(cfg, "exp", ids, folds, p1, a1, seed=1)
    _write_oof(cfg, "other", ids, folds, p2, a2, seed=9)  # same folds, other row order
    oof = load_oof(cfg, ["exp", "other"])
    pos = {i: k for k, i in enumerate(ids)}
    seen = []
    for chunk in oof.chunks(3):
        rows = [pos[i] for i in chunk.ids]
        expected = np.rint((p1[rows].astype(np.float32) + p2[rows]) / 2).astype(np.uint8)
        np.testing.assert_array_equal(chunk.q, expected)
        np.testing.assert_array_equal(chunk.aux, np.rint((a1[rows].astype(np.float32) + a2[rows]) / 2).astype(np.uint8))
        assert set(folds[rows]) == {chunk.fold}
        seen += chunk.ids
    assert sorted(seen) == ids
    # an experiment that lacks an image is refused, naming it
    d = Path(cfg.runs_dir) / "other" / "fold0"
    ids0 = pd.read_csv(d / "oof_ids.csv")
    np.save(d / "oof.npy", np.load(d / "oof.npy")[1:])
    np.save(d / "oof_aux.npy", np.load(d / "oof_aux.npy")[1:])
    ids0.iloc[1:].to_csv(d / "oof_ids.csv", index=False)
    with pytest.raises(ValueError, match=f"other lacks image '{ids0.image_id[0]}'"):
        load_oof(cfg, ["exp", "other"])


def test_oof_store_errors(tmp_path):
    truth, probs, aux = _random_case(np.random.default_rng(2), 4)
    cfg, ids, folds = _write_competition(tmp_path, truth, "dice", n_folds=2)
    with pytest.raises(FileNotFoundError, match="run folder not found"):
        load_oof(cfg, ["exp"])
    _write_oof(cfg, "exp", ids, folds, probs, None, seed=0)
    with pytest.raises(ValueError, match="oof_aux.npy"):
        tune(cfg, progress=False)  # the grid has aux gates but the store has no aux OOF
    d = Path(cfg.runs_dir) / "exp" / "fold0"
    pd.DataFrame({"image_id": ["x"] * 7}).to_csv(d / "oof_ids.csv", index=False)
    with pytest.raises(ValueError, match="oof_ids.csv"):
        find_folds(Path(cfg.runs_dir) / "exp", "exp")
    np.save(d / "oof.npy", probs.astype(np.float32))
    with pytest.raises(ValueError, match="expected uint8"):
        find_folds(Path(cfg.runs_dir) / "exp", "exp")


def test_truth_is_resized_centre_aligned_to_the_submission_size(tmp_path):
    truth, _, _ = _random_case(np.random.default_rng(4), 3)
    cfg, ids, _ = _write_competition(tmp_path, truth, "dice", n_folds=1)
    spec = config_to_dict(cfg)
    spec["competition"]["submission_size"] = [10, 12]
    cfg = config_from_dict(spec)
    got = TruthTable(cfg).masks(ids, (10, 12))
    assert got.shape == (3, C, 10, 12) and got.dtype == bool
    for i, c in itertools.product(range(3), range(C)):
        native = decode(encode(truth[i, c]), (H, W))
        # 20x24 -> 10x12: a pixel is foreground when at least half of its 2x2 block is (geometry.resize_masks)
        np.testing.assert_array_equal(got[i, c], native.reshape(10, 2, 12, 2).mean(axis=(1, 3)) >= 0.5)
    # OOF stored at another size than the submission size is refused
    _write_oof(cfg, "exp", ids, np.zeros(3, dtype=int), np.zeros((3, C, H, W), np.uint8), None, seed=0)
    with pytest.raises(ValueError, match="stores OOF at 10x12"):
        tune(cfg, progress=False)


def _demo_oof(cfg, rng: np.random.Generator) -> None:
    """Fake OOF on the demo competition: blurred truth + noise, by fold of folds.csv."""
    from kseg.data.dataset import decode_masks, read_labels
    from kseg.data.folds import write_folds

    folds, _ = write_folds(cfg)
    labels = read_labels(cfg).set_index("image_id")
    size = tuple(cfg.competition.submission_size)
    names = list(cfg.competition.classes)
    for k in sorted(folds.fold.unique()):
        ids = folds.image_id[folds.fold == k].tolist()
        out = []
        for i in ids:
            m = decode_masks(list(labels.loc[i, names]), size, i, KAGGLE).transpose(2, 0, 1).astype(np.float32)
            p = (
                np.stack([cv2.GaussianBlur(x, (9, 9), 3) for x in m]) * 0.8
                + rng.random(m.shape, dtype=np.float32) ** 6 * 0.7
            )
            out.append(quantize(np.clip(p, 0, 1)))
        d = cfg.fold_dir(int(k))
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "oof.npy", np.stack(out))
        pd.DataFrame({"image_id": ids}).to_csv(d / "oof_ids.csv", index=False)


def test_cli_on_demo_writes_outputs(demo_cfg, tmp_path, capsys):
    _demo_oof(demo_cfg, np.random.default_rng(0))
    cfg_path = tmp_path / "demo.yaml"
    cfg_path.write_text(yaml.safe_dump(config_to_dict(demo_cfg)))
    assert main(["tune", "-c", str(cfg_path), "tune.min_sizes=[0,16,64]", "tune.thresholds=[0.3,0.5,0.7]"]) == 0
    out = capsys.readouterr().out
    assert "CV score" in out and "wrote" in out
    run_dir = demo_cfg.run_dir
    params = load_postprocess(run_dir / "postprocess.json", num_classes=4)
    data = json.loads((run_dir / "postprocess.json").read_text())
    assert data["runs"] == [demo_cfg.name] and data["n_images"] == 24
    assert set(data["scores"]) == {"default", "tuned", "cv"}
    assert data["grid"]["min_sizes"] == [0, 16, 64] and data["grid"]["top_thresholds"] == [None]
    assert data["scores"]["tuned"] >= data["scores"]["default"]
    assert all(p.threshold in (0.3, 0.5, 0.7) and p.min_size in (0, 16, 64) for p in params)
    table = pd.read_csv(run_dir / "tune.csv")
    assert len(table) == 4 * 9 and {"score", "score_fold0", "score_fold2"} <= set(table.columns)
    for name in demo_cfg.competition.classes:
        png = run_dir / f"tune_{name}.png"
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_cli_runs_argument_takes_trailing_overrides(demo_cfg, tmp_path, capsys):
    _demo_oof(demo_cfg, np.random.default_rng(1))
    cfg_path = tmp_path / "demo.yaml"
    cfg_path.write_text(yaml.safe_dump(config_to_dict(demo_cfg)))
    args = [
        "tune",
        "-c",
        str(cfg_path),
        "--no-plots",
        "--runs",
        demo_cfg.name,
        "tune.thresholds=[0.4]",
        "tune.min_sizes=[0]",
    ]
    assert main(args) == 0
    data = json.loads((demo_cfg.run_dir / "postprocess.json").read_text())
    assert data["grid"]["thresholds"] == [0.4] and not list(demo_cfg.run_dir.glob("*.png"))
    capsys.readouterr()
