"""train.swa: which epochs are averaged, the mean of their weights, BN statistics recomputed, kept or not, resume."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from kseg.atomic import atomic_torch_save, torch_load
from kseg.config import TrainConfig
from kseg.train.fit import train_fold
from kseg.train.runtime import Runtime
from kseg.train.state import Progress
from kseg.train.swa import average_checkpoints, recompute_bn
from kseg.typed import ConfigError

from _train_support import tiny_config


def _progress(scores: list[float]) -> Progress:
    p = Progress()
    for e, s in enumerate(scores, 1):
        p.record({"epoch": e, "lr": 0.0, "train_loss": 0.0, "val_loss": 0.0, "val_metric": s, "seconds": 0.0})
    return p


def test_candidates_top_k_last_k_and_off_by_hand() -> None:
    p = _progress([0.5, 0.7, math.nan, 0.7, 0.6, 0.2])
    assert p.swa_candidates("top", 3) == [2, 4, 5]  # 0.7, 0.7, 0.6; NaN never
    assert p.swa_candidates("top", 1) == [4]  # tie 0.7 / 0.7: the later epoch
    assert p.swa_candidates("last", 2) == [5, 6]
    assert p.swa_candidates("last", 10) == [1, 2, 3, 4, 5, 6]
    assert p.swa_candidates("off", 3) == []


def test_select_last_refuses_top_k() -> None:
    with pytest.raises(ConfigError, match="train.swa=last"):
        TrainConfig(select="last", swa="top")
    TrainConfig(select="last", swa="last")


def test_average_is_the_mean_of_the_checkpoints(tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))
    states = []
    for i in range(3):
        state = {
            k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
            for k, v in model.state_dict().items()
        }
        state["1.running_mean"] = torch.full((2,), float(i))
        atomic_torch_save({"state_dict": state}, tmp_path / f"e{i}.pt")
        states.append(state)
    avg = average_checkpoints(model, [tmp_path / f"e{i}.pt" for i in range(3)])
    for name, param in avg.named_parameters():
        expected = (states[0][name] + states[1][name] + states[2][name]) / 3
        torch.testing.assert_close(param, expected)
    assert avg.state_dict()["1.running_mean"].tolist() == [2.0, 2.0]  # buffers: the last checkpoint's
    assert avg is not model and not torch.equal(model[0].weight, avg[0].weight)


def test_bn_statistics_are_recomputed_as_the_mean_over_training_batches() -> None:
    bn = nn.BatchNorm2d(3, momentum=0.1)
    bn.running_mean.fill_(5.0)
    g = torch.Generator().manual_seed(1)
    batches = [{"image": torch.randn(4, 3, 2, 2, generator=g) * (i + 1) + i} for i in range(3)]
    recompute_bn(bn, [batches[0], None, batches[1], batches[2]], Runtime(torch.device("cpu")))
    x = [b["image"] for b in batches]
    mean = sum(b.mean(dim=(0, 2, 3)) for b in x) / 3  # cumulative average of the batch means
    var = sum(b.transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=True) for b in x) / 3
    torch.testing.assert_close(bn.running_mean, mean)
    torch.testing.assert_close(bn.running_var, var)
    assert int(bn.num_batches_tracked) == 3 and bn.momentum == 0.1 and not bn.training


def _bn_buffers(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


class Killed(Exception):
    pass


def _kill_before_swa(epoch: int, progress) -> None:
    if epoch == 3:
        raise Killed


def test_swa_on_the_demo_averages_recomputes_bn_and_resumes(demo_root, tmp_path) -> None:
    extra = ["train.epochs=3", "train.swa=top", "train.swa_k=2"]
    cfg = tiny_config(demo_root, tmp_path, *extra)
    result = train_fold(cfg, 0)
    layout = cfg.layout
    metrics = pd.read_csv(layout.metrics(0))
    epochs = metrics[metrics.swa_epochs.isna()]
    top2 = sorted(epochs.sort_values(["val_metric", "epoch"], ascending=False).epoch[:2].tolist())
    row = metrics[metrics.swa_epochs.notna()].iloc[0]
    assert [int(e) for e in str(row.swa_epochs).split()] == top2
    # only the averaged epochs' checkpoints are left
    assert sorted(p.name for p in layout.epochs_dir(0).iterdir()) == [layout.epoch_checkpoint(0, e).name for e in top2]

    swa = torch_load(layout.swa(0))
    members = [torch_load(layout.epoch_checkpoint(0, e))["state_dict"] for e in top2]
    bn_names = _bn_buffers(swa["state_dict"])
    for name, value in swa["state_dict"].items():
        if name in bn_names or not value.is_floating_point():
            continue
        torch.testing.assert_close(value, (members[0][name] + members[1][name]) / 2)  # the mean of the two
    used = {k: v for k, v in bn_names.items() if not torch.equal(members[1][k], torch.zeros_like(v))}
    used = {k: v for k, v in used.items() if not torch.equal(members[1][k], torch.ones_like(v))}  # BNs that ran
    assert len(used) >= 4
    for name, value in used.items():  # recomputed on the training images: neither member's nor their mean
        mean = (members[0][name] + members[1][name]) / 2
        assert not torch.allclose(value, members[1][name]) and not torch.allclose(value, mean)
    folds = pd.read_csv(cfg.folds_path)
    n_train = int((folds.fold != 0).sum())
    n_batches = n_train // 4 if n_train > 4 else 1  # batch 4, the train loader drops a short last batch
    layers = {k.rsplit(".", 1)[0] for k in used}
    tracked = {int(swa["state_dict"][f"{layer}.num_batches_tracked"]) for layer in layers}
    assert tracked == {n_batches}  # one update_bn pass over the training images, not 3 epochs
    assert {int(members[1][f"{layer}.num_batches_tracked"]) for layer in layers} == {3 * n_batches}

    best_epoch = epochs.val_metric.max()
    assert row.val_metric == pytest.approx(swa["score"]) and result.swa_score == pytest.approx(swa["score"])
    assert bool(row.swa_kept) == (swa["score"] >= best_epoch) == result.swa_kept
    best = torch_load(layout.best(0))
    assert ("swa" in best) == result.swa_kept  # best.pt holds the average only when it scored at least as well

    # killed after the last epoch, before averaging: --resume averages to the same weights
    again = tiny_config(demo_root, tmp_path, *extra, f"runs_dir={tmp_path / 'killed'}")
    with pytest.raises(Killed):
        train_fold(again, 0, on_epoch_end=_kill_before_swa)
    assert not again.layout.swa(0).exists()
    resumed = train_fold(again, 0, resume=True)
    assert resumed.swa_score == pytest.approx(result.swa_score)
    redo = torch_load(again.layout.swa(0))["state_dict"]
    assert all(torch.equal(redo[k], v) for k, v in swa["state_dict"].items())
    assert train_fold(again, 0, resume=True).swa_score == resumed.swa_score  # done: not averaged again
