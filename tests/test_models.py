"""Model building, outputs per mode, local encoder weights, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kseg.config import load_config
from kseg.models import (
    build_model,
    load_checkpoint,
    load_encoder_weights,
    num_outputs,
    predict_proba,
    probs_from_output,
    save_checkpoint,
    set_encoder_trainable,
    unwrap,
)

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.encoder=resnet18", "model.encoder_weights=none",
        "model.kwargs={encoder_depth: 3, decoder_channels: [16, 8, 4]}"]  # fmt: skip


def cfg_with(*overrides: str):
    return load_config(REPO / "configs" / "demo.yaml", [*TINY, *overrides])


def test_multilabel_outputs_one_channel_per_class_and_aux_logits():
    cfg = cfg_with("model.aux_head=true")
    model = build_model(cfg).eval()
    out = model(torch.randn(2, 3, 32, 64))
    assert out["mask"].shape == (2, 4, 32, 64)
    assert out["aux"].shape == (2, 4)
    probs, aux = probs_from_output(out, "multilabel")
    assert torch.allclose(probs, out["mask"].sigmoid()) and torch.allclose(aux, out["aux"].sigmoid())


def test_multiclass_has_background_channel_and_proba_drops_it():
    cfg = cfg_with("competition.mode=multiclass")
    assert num_outputs(cfg) == 5
    model = build_model(cfg).eval()
    out = model(torch.randn(1, 3, 32, 32))
    assert out["mask"].shape == (1, 5, 32, 32) and "aux" not in out
    probs, aux = predict_proba(model, torch.randn(1, 3, 32, 32), "multiclass")
    assert probs.shape == (1, 4, 32, 32) and aux is None
    assert (probs.sum(1) < 1).all()  # background carries the rest of the mass


def test_probs_from_output_softmax_by_hand():
    logits = torch.log(torch.tensor([1.0, 2.0, 5.0])).reshape(1, 3, 1, 1)  # softmax = 1/8, 2/8, 5/8
    probs, _ = probs_from_output({"mask": logits}, "multiclass")
    assert torch.allclose(probs.flatten(), torch.tensor([0.25, 0.625]))


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="model: cannot build Unet with encoder nope"):
        build_model(cfg_with("model.encoder=nope"))


def test_local_encoder_weights_file_is_loaded_without_network(tmp_path):
    donor = build_model(cfg_with())
    with torch.no_grad():
        for p in donor.encoder.parameters():
            p.uniform_(-1, 1)
    path = tmp_path / "enc.pth"
    torch.save({"state_dict": {f"module.encoder.{k}": v for k, v in donor.encoder.state_dict().items()}}, path)
    model = build_model(cfg_with(f"model.encoder_weights={path}"))
    for (k, a), b in zip(donor.encoder.state_dict().items(), model.encoder.state_dict().values()):
        assert torch.equal(a, b), k
    fresh = build_model(cfg_with())
    assert not torch.equal(fresh.encoder.conv1.weight, donor.encoder.conv1.weight)


def test_encoder_weights_partial_file_reports_missing_keys(tmp_path):
    model = build_model(cfg_with())
    path = tmp_path / "part.pt"
    torch.save({"conv1.weight": torch.ones_like(model.encoder.conv1.weight), "fc.weight": torch.ones(3, 3)}, path)
    missing, ignored = load_encoder_weights(model.encoder, path)
    assert torch.equal(model.encoder.conv1.weight, torch.ones_like(model.encoder.conv1.weight))
    assert "bn1.weight" in missing and "conv1.weight" not in missing
    assert ignored == ["fc.weight"]


def test_encoder_weights_wrong_or_missing_file(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"something.else": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="no tensor of .*bad.pt matches the encoder"):
        build_model(cfg_with(f"model.encoder_weights={bad}"))
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        build_model(cfg_with(f"model.encoder_weights={tmp_path / 'nope.pth'}"))


def test_checkpoint_round_trip_rebuilds_from_the_file_alone(tmp_path):
    cfg = cfg_with("model.aux_head=true", "model.encoder_weights=imagenet")  # must not be downloaded on load
    offline = cfg.replace(model=cfg.model.__class__(**{**cfg.model.__dict__, "encoder_weights": None}))
    model = build_model(offline).eval()
    x = torch.randn(2, 3, 32, 64)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, cfg, epoch=3, score=0.5)
    raw = torch.load(path, weights_only=True)
    assert raw["epoch"] == 3 and raw["config"]["model"]["encoder_weights"] == "imagenet"
    loaded, cfg2 = load_checkpoint(path)
    assert cfg2 == cfg and not loaded.training
    a, b = model(x), loaded(x)
    assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["aux"], b["aux"])
    assert not any(p.name.startswith(".m.pt") for p in tmp_path.iterdir())  # no temp file left


def test_load_checkpoint_rejects_other_files(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a kseg checkpoint"):
        load_checkpoint(path)


def test_freeze_and_unwrap():
    model = build_model(cfg_with())
    ema = torch.optim.swa_utils.AveragedModel(model)
    assert unwrap(ema) is ema.module
    set_encoder_trainable(model, False)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.net.decoder.parameters())
    set_encoder_trainable(model, True)
    assert all(p.requires_grad for p in model.parameters())
