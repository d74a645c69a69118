"""kseg.train.trainer: one state_dict / load_state_dict pair for last.pt and --resume; the optimizer step."""

from __future__ import annotations

import pytest
import torch

from kseg.config import load_config
from kseg.losses import build_loss
from kseg.models import build_model
from kseg.train.loop import train_epoch
from kseg.train.runtime import Runtime
from kseg.train.state import load_last
from kseg.train.trainer import Trainer

from _train_support import REPO, TINY

# every piece of state on: EMA, clipping, accumulation, warmup schedule, aux head (dropout draws from the RNG)
FEATURES = [
    "train.ema=true",
    "train.ema_decay=0.9",
    "train.clip_grad=1.0",
    "train.accumulate=2",
    "sched.warmup_epochs=0.5",
    "model.aux_head=true",
    "train.epochs=3",
]


def _cfg(*extra: str):
    return load_config(REPO / "configs" / "demo.yaml", [*TINY, *FEATURES, *extra])


def _trainer(cfg, seed: int) -> Trainer:
    torch.manual_seed(seed)
    model = build_model(cfg)
    generator = torch.Generator().manual_seed(seed)
    return Trainer.build(cfg, model, build_loss(cfg), 2, Runtime(torch.device("cpu"), progress=False), None, generator)


def _batches(n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    images = [torch.randn(2, 3, 32, 64, generator=g) for _ in range(n)]
    masks = [torch.rand(2, 4, 32, 64, generator=g) > 0.7 for _ in range(n)]
    pairs = enumerate(zip(images, masks, strict=True))
    return [{"image": x, "mask": y, "id": [f"b{i}a", f"b{i}b"]} for i, (x, y) in pairs]


def _state(t: Trainer) -> dict:
    s = t.state_dict()
    s.pop("rng")  # the global generators, compared by drawing from them
    return {**s, "draw": torch.rand(3), "loader_draw": torch.rand(3, generator=t.generator)}


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def test_save_then_resume_in_a_fresh_trainer_takes_the_identical_next_step(tmp_path):
    cfg = _cfg()
    first = _trainer(cfg, seed=0)
    train_epoch(first, first.net(0), _batches(4, seed=1), "ep1")  # 2 optimizer steps, EMA and schedule moved
    first.progress.record({"epoch": 1, "lr": 0.0, "train_loss": 1.0, "val_loss": 1.0, "val_metric": 0.5, "seconds": 1})
    first.save(tmp_path / "last.pt")
    saved = load_last(tmp_path / "last.pt")
    need = {"state_dict", "config", "optimizer", "scheduler", "scaler", "ema", "progress", "rng", "generator"}
    assert need <= set(saved)
    assert saved["epoch"] == 1 and saved["score"] == 0.5
    progress, lr = first.progress.to_dict(), first.lr
    batches = _batches(2, seed=2)
    want = train_epoch(first, first.net(1), batches, "ep2"), _state(first)  # the next step of the saved run

    fresh = _trainer(cfg, seed=5)  # other initial weights, empty optimizer, RNG elsewhere
    torch.rand(7)
    fresh.resume(tmp_path / "last.pt")
    assert fresh.progress.to_dict() == progress and fresh.lr == lr
    got = train_epoch(fresh, fresh.net(1), batches, "ep2"), _state(fresh)
    assert got[0] == want[0]
    assert _same(got[1], want[1])  # weights, EMA, optimizer, schedule, scaler, RNG: the identical next step


def test_load_state_dict_round_trip_through_memory():
    import io

    cfg = _cfg()
    a = _trainer(cfg, seed=0)
    train_epoch(a, a.net(0), _batches(2, seed=1), "ep1")
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # the tensors are live: serialise before training on
    want = _state(a)
    b = _trainer(cfg, seed=3)
    b.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert _same(_state(b), want)


def test_resume_of_an_ema_run_needs_the_ema_weights(tmp_path):
    plain = _trainer(_cfg("train.ema=false"), seed=0)
    plain.save(tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"last.pt: train.ema is on but the checkpoint has no EMA weights"):
        _trainer(_cfg(), seed=0).resume(tmp_path / "last.pt")


def test_step_clips_steps_averages_and_schedules_or_only_schedules():
    t = _trainer(_cfg("train.accumulate=1", "sched.warmup_epochs=1"), seed=0)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    lr0 = t.lr
    t.step(apply=False)  # a skipped group: weights and EMA stay, the schedule follows the batch count
    assert all(torch.equal(before[k], v) for k, v in t.model.state_dict().items()) and t.lr > lr0
    assert int(t.ema.n_averaged) == 0
    net = t.net(0)
    loss, _ = t.loss_fn(net(_batches(1, seed=1)[0]["image"]), _batches(1, seed=1)[0]["mask"].float())
    (loss * 1e6).backward()  # a huge gradient: clipped to train.clip_grad=1 before the step
    assert t.step() is False  # no AMP on CPU: the GradScaler never skips
    assert int(t.ema.n_averaged) == 1 and all(p.grad is None for p in t.model.parameters())
    moved = [k for k, v in t.model.state_dict().items() if v.is_floating_point() and not torch.equal(before[k], v)]
    assert moved


def test_net_freezes_the_encoder_for_its_epochs_then_unfreezes():
    t = _trainer(_cfg("model.freeze_encoder_epochs=1"), seed=0)
    encoder, decoder = t.model.net.encoder, t.model.net.decoder
    assert t.net(0) is t.model  # one process: no DDP wrapper
    assert not any(p.requires_grad for p in encoder.parameters()) and all(p.requires_grad for p in decoder.parameters())
    t.net(1)
    assert all(p.requires_grad for p in encoder.parameters())


def test_eval_model_is_the_ema_copy_with_train_ema():
    assert _trainer(_cfg("train.ema=false"), seed=0).eval_model.__class__.__name__ != "AveragedModel"
    t = _trainer(_cfg(), seed=0)
    assert t.eval_model is t.ema.module and t.eval_model is not t.model
