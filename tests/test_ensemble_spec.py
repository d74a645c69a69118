"""The ensemble file: round trip, weights normalised (0 = not a member), malformed files named by file and field;
predict refuses a postprocess.json tuned on other weights; per-checkpoint weights of an ensemble by hand."""

from __future__ import annotations

import json

import pytest

from kseg.ensemble_spec import ensemble_record, find_ensemble, read_ensemble, write_ensemble
from kseg.infer.ensemble import experiment_weights
from kseg.infer.pipeline import postprocess_mismatch


def test_round_trip_and_zero_weight_members(tmp_path) -> None:
    record = ensemble_record("ens", {"a": 3, "b": 0, "c": 1}, [0, 1, 2], "", scores={"cv": 0.5})
    assert [m["weight"] for m in record["members"]] == [0.75, 0.0, 0.25] and record["oof_tta"] == "none"
    path = write_ensemble(tmp_path / "ensemble.json", record)
    spec = read_ensemble(path)
    assert spec.experiment == "ens" and spec.runs == ["a", "c"] and spec.weights == {"a": 0.75, "c": 0.25}
    assert spec.folds == (0, 1, 2) and spec.record["scores"] == {"cv": 0.5}
    assert find_ensemble(tmp_path / "missing.json") is None
    with pytest.raises(ValueError, match="needs a member"):
        ensemble_record("ens", {"a": 0}, [0], "")


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (None, "'members' must be a non-empty list"),
        ([{"run": "a", "weight": -1}], r"members\[0\] \(a\): weight must be a number >= 0, got -1"),
        ([{"run": "a", "weight": 1}, {"run": "a", "weight": 1}], r"members\[1\]: run 'a' listed twice"),
        ([{"weight": 1}], r"members\[0\]: expected"),
        ([{"run": "a", "weight": 0}], "every member has weight 0"),
    ],
)
def test_malformed_files_name_the_file_and_the_field(tmp_path, members, message) -> None:
    path = tmp_path / "ensemble.json"
    path.write_text(json.dumps({"members": members}))
    with pytest.raises(ValueError, match=message) as err:
        read_ensemble(path)
    assert str(path) in str(err.value)


def test_checkpoint_weights_and_postprocess_weights_check() -> None:
    assert experiment_weights(["a", "b"], None) == {"a": 0.5, "b": 0.5}
    assert experiment_weights(["a", "b"], {"a": 3.0, "b": 1.0}) == {"a": 0.75, "b": 0.25}
    with pytest.raises(ValueError, match="no weight > 0 for experiment 'b'"):
        experiment_weights(["a", "b"], {"a": 1.0})
    record = {"runs": ["a", "b"], "folds": [0, 1], "oof_tta": "none", "weights": {"a": 3.0, "b": 1.0}}
    runs = {"a": [0, 1], "b": [0, 1]}
    assert postprocess_mismatch(record, runs, "none", {"a": 0.75, "b": 0.25}) == []
    assert postprocess_mismatch(record, runs, "none") == ["weights {'a': 0.75, 'b': 0.25} -> {'a': 0.5, 'b': 0.5}"]
    del record["weights"]  # a plain kseg tune of both runs: their equal mean
    assert postprocess_mismatch(record, runs, "none") == []
    assert postprocess_mismatch(record, runs, "none", {"a": 0.75, "b": 0.25}) == [
        "weights {'a': 0.5, 'b': 0.5} -> {'a': 0.75, 'b': 0.25}"
    ]
