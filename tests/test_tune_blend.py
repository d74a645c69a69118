"""select_ensemble on OOF stores written to disk for the demo competition: weights, scores, folds check, file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kseg.ensemble_spec import read_ensemble
from kseg.tune.blend import check_same_folds, select_ensemble, write_ensemble_outputs
from kseg.tune.oof_set import load_oof
from kseg.tune.run import tune

from _train_support import ensemble_cfg, write_member_oof


def test_noise_gets_no_weight_scores_are_honest_and_the_file_round_trips(demo_root, tmp_path) -> None:
    cfg = ensemble_cfg(demo_root, tmp_path)
    write_member_oof(cfg, np.random.default_rng(0))
    result = select_ensemble(cfg, ["good", "noise", "fair"], steps=4, progress=False)
    assert result.counts["noise"] == 0 and result.weights["good"] >= 0.5
    for path in result.splits.values():
        assert path.best_counts()[1] == 0
    # members tuned alone, exactly as kseg tune does
    alone = tune(cfg, ["good"], progress=False)
    assert result.members["good"].score_cv == alone.score_cv
    # the final post-processing is tune's on the weighted mean of the chosen runs
    chosen = {r: float(c) for r, c in result.counts.items() if c}
    again = tune(cfg, list(chosen), progress=False, weights=chosen if len(chosen) > 1 else None)
    assert result.score_tuned == again.score_tuned
    assert result.score_cv <= result.score_tuned + 1e-12  # held folds never beat the in-sample choice here
    assert sum(result.fold_images.values()) == len(pd.read_csv(cfg.folds_path))

    paths = write_ensemble_outputs(cfg, result, steps=4, plots=False)
    spec = read_ensemble(paths["ensemble"])
    assert spec.experiment == cfg.name and "noise" not in spec.runs
    assert spec.weights == pytest.approx({r: w for r, w in result.weights.items() if w})
    scores = spec.record["scores"]
    assert scores["cv"] == pytest.approx(result.score_cv, abs=1e-6)  # the nested estimate, not the tuning's own CV
    assert scores["cv_postprocess_only"] == pytest.approx(result.final.score_cv, abs=1e-6)
    assert scores["optimistic"] == pytest.approx(result.final.score_tuned, abs=1e-6)
    assert spec.record["member_scores"]["noise"]["cv"] < spec.record["member_scores"]["good"]["cv"]
    post = json.loads(cfg.layout.postprocess.read_text())
    assert sorted(post["runs"]) == sorted(spec.runs)
    assert (post.get("weights") is None) == (len(spec.runs) == 1)


def test_runs_on_other_folds_are_refused(demo_root, tmp_path) -> None:
    cfg = ensemble_cfg(demo_root, tmp_path)
    write_member_oof(cfg, np.random.default_rng(1))
    moved = cfg.replace(name="fair").layout  # swap one image between fold 0 and fold 1 of 'fair'
    a, b = (pd.read_csv(moved.oof(k).ids, dtype=str) for k in (0, 1))
    qa, qb = np.load(moved.oof(0).probs), np.load(moved.oof(1).probs)
    a.iloc[0, 0], b.iloc[0, 0] = b.iloc[0, 0], a.iloc[0, 0]
    qa[0], qb[0] = qb[0].copy(), qa[0].copy()
    for k, (ids, q) in enumerate(((a, qa), (b, qb))):
        ids.to_csv(moved.oof(k).ids, index=False)
        np.save(moved.oof(k).probs, q)
    with pytest.raises(ValueError, match="same folds.csv"):
        check_same_folds(load_oof(cfg, ["good", "fair"]))
    with pytest.raises(ValueError, match="other folds"):  # and 'fair' alone disagrees with folds.csv
        select_ensemble(cfg, ["good", "fair"])
