"""Item 9: the built kernel runs with the network blocked and without any weight download.

Already proven by tests/test_kernel_rehearse.py: ::test_network_is_blocked (the rehearsal's network cut
really blocks, unshare and socket guard), ::test_rehearsal_fails_when_the_script_needs_the_network, and
::test_demo_kernel_rehearses_offline_green (the real generated script installs its wheels offline, runs
kseg predict + validate with the network cut and passes). What that run cannot show is a checkpoint whose
config asks for pretrained weights (the demo's says none): here every weight download entry point
(Hugging Face hub, torch.hub) is trapped, and loading such checkpoints, as the kernel's ``kseg predict``
does, must not touch one; a control shows the trap does catch smp's download.
"""

from __future__ import annotations

import sys

import pytest
import torch

from kseg.config import load_config
from kseg.infer.ensemble import Ensemble
from kseg.models import build_model, load_checkpoint, save_checkpoint

from _reliab import DEMO_YAML, tiny_cfg


@pytest.fixture()
def download_trap(monkeypatch):
    """Every download function smp / timm use records its call and fails."""
    calls: list[str] = []

    def trap(*args, **kwargs):
        calls.append(f"{args[:1]} {kwargs.get('filename', '')}")
        raise OSError("test: weight download attempted")

    import huggingface_hub
    import torch.hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", trap)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", trap)
    monkeypatch.setattr(torch.hub, "download_url_to_file", trap)
    for name, mod in list(sys.modules.items()):  # copies bound at import time
        if name.startswith(("segmentation_models_pytorch", "timm", "huggingface_hub")):
            for attr in ("hf_hub_download", "load_state_dict_from_url", "download_url_to_file"):
                if hasattr(mod, attr):
                    monkeypatch.setattr(mod, attr, trap)
    return calls


def test_trap_catches_a_pretrained_build(download_trap):
    with pytest.raises(OSError, match="weight download attempted"):
        build_model(load_config(DEMO_YAML, ["model.encoder_weights=imagenet"]))
    assert download_trap


@pytest.mark.parametrize("encoder", ["resnet18", "tu-resnet18"])
def test_checkpoint_asking_for_imagenet_loads_without_download(demo_root, tmp_path, download_trap, encoder):
    cfg = tiny_cfg(demo_root, tmp_path, f"model.encoder={encoder}", "model.encoder_weights=imagenet")
    offline = cfg.replace(model=cfg.model.__class__(**{**cfg.model.__dict__, "encoder_weights": None}))
    model = build_model(offline)
    for k in (0, 1):
        save_checkpoint(cfg.fold_dir(k) / "best.pt", model, cfg)
    loaded, saved_cfg = load_checkpoint(cfg.fold_dir(0) / "best.pt")
    assert saved_cfg.model.encoder_weights == "imagenet"  # the checkpoint still says so ...
    ens = Ensemble.from_runs(cfg, (cfg.name,), (), tta="none", device="cpu")  # ... and predict loads it offline
    assert len(ens) == 2 and download_trap == []
    x = torch.randn(1, 3, 32, 64)
    assert torch.equal(loaded(x)["mask"], model.eval()(x)["mask"])
