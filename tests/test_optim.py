"""Optimizers and schedules built from config; lr values checked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from kseg.config import load_config
from kseg.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler
from kseg.typed import ConfigError

REPO = Path(__file__).resolve().parents[1]


def cfg_with(*overrides: str):
    return load_config(REPO / "configs" / "demo.yaml", list(overrides))


def params():
    return [torch.nn.Parameter(torch.zeros(3))]


def lrs(cfg, steps_per_epoch: int, epochs: int, metrics=None) -> list[float]:
    """lr before each optimizer step over ``epochs`` epochs."""
    opt = build_optimizer(cfg, params())
    sched = build_scheduler(cfg, opt, steps_per_epoch)
    out = []
    for e in range(epochs):
        for _ in range(steps_per_epoch):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step_batch()
        sched.step_epoch(metrics[e] if metrics else None)
    return out


@pytest.mark.parametrize(
    "name,cls",
    [
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("sgd", torch.optim.SGD),
        ("rmsprop", torch.optim.RMSprop),
    ],
)
def test_optimizers(name, cls):
    opt = build_optimizer(cfg_with(f"optim.name={name}", "optim.lr=0.01", "optim.weight_decay=0.5"), params())
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["weight_decay"] == 0.5
    assert set(OPTIMIZERS) == {"adam", "adamw", "sgd", "rmsprop"}


def test_optimizer_params_pass_through_and_errors():
    opt = build_optimizer(cfg_with("optim.name=sgd", "optim.params={momentum: 0.5, nesterov: true}"), params())
    assert opt.param_groups[0]["momentum"] == 0.5 and opt.param_groups[0]["nesterov"]
    with pytest.raises(ConfigError, match="optim.params: adam does not accept"):
        build_optimizer(cfg_with("optim.name=adam", "optim.params={nope: 1}"), params())


def test_cosine_with_warmup_by_hand():
    cfg = cfg_with("optim.lr=1.0", "sched.name=cosine", "sched.warmup_epochs=1", "train.epochs=3")
    got = lrs(cfg, steps_per_epoch=2, epochs=3)
    # warmup 2 steps: 1/2, 2/2; then cosine over the remaining 4 steps: progress 0, 1/4, 2/4, 3/4
    want = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * p)) for p in (0, 0.25, 0.5, 0.75)]
    assert got == pytest.approx(want)


def test_cosine_min_lr():
    cfg = cfg_with("optim.lr=1.0", "sched.name=cosine", "sched.params={min_lr: 0.1}", "train.epochs=1")
    got = lrs(cfg, steps_per_epoch=3, epochs=1)
    assert got == pytest.approx([1.0, 0.1 + 0.9 * 0.75, 0.1 + 0.9 * 0.25])


def test_step_schedule_by_hand():
    cfg = cfg_with("optim.lr=1.0", "sched.name=step", "sched.params={step_size: 1, gamma: 0.5}", "train.epochs=3")
    assert lrs(cfg, steps_per_epoch=2, epochs=3) == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])


def test_onecycle_peaks_at_the_warmup_end():
    cfg = cfg_with("optim.lr=1.0", "sched.name=onecycle", "sched.warmup_epochs=1", "train.epochs=4")
    got = lrs(cfg, steps_per_epoch=5, epochs=4)
    assert got[0] == pytest.approx(1.0 / 25)  # div_factor
    assert max(got) == pytest.approx(1.0, rel=1e-3) and 3 <= got.index(max(got)) <= 5
    assert got[-1] < 0.01


def test_plateau_halves_after_patience_without_improvement():
    cfg = cfg_with("optim.lr=1.0", "sched.name=plateau", "sched.params={patience: 1, factor: 0.5}", "train.epochs=5")
    got = lrs(cfg, steps_per_epoch=1, epochs=5, metrics=[0.5, 0.6, 0.6, 0.6, 0.6])
    assert got == pytest.approx([1, 1, 1, 1, 0.5])  # bad epochs 3 and 4 -> reduce after epoch 4
    with pytest.raises(ConfigError, match="plateau has no warmup"):
        build_scheduler(cfg_with("sched.name=plateau", "sched.warmup_epochs=1"), build_optimizer(cfg, params()), 1)


def test_scheduler_state_round_trip_continues_identically():
    cfg = cfg_with("optim.lr=1.0", "sched.name=cosine", "sched.warmup_epochs=0.5", "train.epochs=2")
    p1 = params()
    opt = build_optimizer(cfg, p1)
    sched = build_scheduler(cfg, opt, 4)
    for _ in range(3):
        opt.step()
        sched.step_batch()
    opt2 = build_optimizer(cfg, params())
    sched2 = build_scheduler(cfg, opt2, 4)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    for _ in range(3):
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step_batch()
        assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]


def test_unknown_sched_params_listed():
    assert set(SCHEDULERS) == {"none", "cosine", "onecycle", "plateau", "step"}
    with pytest.raises(ConfigError, match="sched.params.nope: not a cosine option; valid: min_lr"):
        build_scheduler(
            cfg_with("sched.name=cosine", "sched.params={nope: 1}"), build_optimizer(cfg_with(), params()), 1
        )


# --------------------------------------------------------------------------- weight-decay parameter groups


def small_unet():
    from kseg.models import build_model

    return build_model(cfg_with("model.kwargs={encoder_depth: 3, decoder_channels: [16, 8, 4]}"))


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_norm_and_bias_parameters_get_no_weight_decay(name):
    model = small_unet()
    opt = build_optimizer(cfg_with(f"optim.name={name}", "optim.weight_decay=0.01"), model)
    no_decay, decay = opt.param_groups
    assert (no_decay["weight_decay"], decay["weight_decay"]) == (0.0, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    want = {n for n, p in model.named_parameters() if p.ndim == 1}  # BatchNorm weights and biases, conv biases
    assert {names[id(p)] for p in no_decay["params"]} == want
    assert any(".bn1.weight" in n for n in want) and any(n.endswith(".bias") for n in want)
    assert all(p.ndim > 1 for p in decay["params"])  # conv kernels only
    assert len(no_decay["params"]) + len(decay["params"]) == len(list(model.parameters()))


def test_one_group_when_the_option_is_off_or_for_plain_tensors():
    model = small_unet()
    opt = build_optimizer(cfg_with("optim.weight_decay=0.01", "optim.no_decay_norm_bias=false"), model)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.01
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))
    opt = build_optimizer(cfg_with("optim.weight_decay=0.01"), model.parameters())  # tensors: nothing to group by
    assert len(opt.param_groups) == 1


def test_weight_decay_leaves_a_norm_weight_alone():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.BatchNorm2d(1))
    before = [p.detach().clone() for p in model.parameters()]
    opt = build_optimizer(cfg_with("optim.name=sgd", "optim.lr=0.1", "optim.weight_decay=0.5"), model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # zero gradients: only weight decay moves a parameter
    conv_w, conv_b, bn_w, bn_b = (torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert (conv_w, conv_b, bn_w, bn_b) == (False, True, True, True)
