"""Model building, outputs per mode, local encoder weights, checkpoint round trip."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from kseg.config import load_config
from kseg.models import (
    WeightsUnavailableError,
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
TINY = [
    "model.encoder=resnet18",
    "model.encoder_weights=none",
    "model.kwargs={encoder_depth: 3, decoder_channels: [16, 8, 4]}",
]


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
    for (k, a), b in zip(donor.encoder.state_dict().items(), model.encoder.state_dict().values(), strict=True):
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


# --------------------------------------------------------------------------- pretrained weights offline

REMEDIES = ("with internet", "model.encoder_weights=/path/to/resnet18.safetensors", "model.encoder_weights=none")


@pytest.fixture()
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HUB_OFFLINE=1 with an empty Hugging Face cache; any socket connection fails the test."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import: patch the module's copy too
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network connection attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    return cache


def test_offline_imagenet_weights_fail_before_training_with_remedies(offline_hub: Path) -> None:
    from kseg.train.preflight import check_weights

    cfg = cfg_with("model.encoder_weights=imagenet")
    with pytest.raises(WeightsUnavailableError) as err:
        check_weights(cfg)
    msg = str(err.value)
    assert msg.startswith("model.encoder_weights='imagenet' of model.encoder='resnet18'"), msg
    assert "smp-hub/resnet18.imagenet" in msg and str(offline_hub) in msg
    assert all(r in msg for r in REMEDIES), msg
    assert "cannot find the requested files" not in msg  # the Hub's raw message is only the cause
    with pytest.raises(WeightsUnavailableError, match="model.encoder='resnet18'"):
        build_model(cfg)  # every other path that builds with pretrained weights says the same
    check_weights(cfg_with())  # encoder_weights=none: nothing to fetch


def test_offline_train_command_reports_weights_not_hub_error(
    offline_hub: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from kseg.cli import main

    ov = [
        f"data.root={demo_root}",
        f"data.folds_csv={tmp_path / 'folds.csv'}",
        f"runs_dir={tmp_path / 'runs'}",
        "model.encoder=resnet18",
    ]
    assert main(["folds", "-c", str(REPO / "configs/demo.yaml"), *ov]) == 0
    assert (
        main(["train", "-c", str(REPO / "configs/demo.yaml"), "--fold", "0", *ov, "model.encoder_weights=imagenet"])
        == 1
    )
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and all(r in errors[0] for r in ("'resnet18'", "'imagenet'", *REMEDIES[::2])), errors
    assert not (tmp_path / "runs").exists()  # failed before any artefact


def test_unknown_weights_name_is_a_config_error() -> None:
    from kseg.models import fetch_encoder_weights

    with pytest.raises(ValueError, match="Wrong pretrained weights `imagenett` for encoder `resnet18`"):
        fetch_encoder_weights(cfg_with("model.encoder_weights=imagenett"))
