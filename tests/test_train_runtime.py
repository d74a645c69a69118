"""kseg.train.runtime: how tensors run (AMP and channels_last only on CUDA) and the GradScaler step."""

from __future__ import annotations

import torch

from kseg.config import load_config, read_saved_config, save_config
from kseg.train.dist import DistInfo
from kseg.train.runtime import Runtime, amp_dtype, maybe_compile

from _train_support import REPO


def test_cpu_runtime_turns_amp_and_channels_last_off_and_bars_follow_the_rank():
    cfg = load_config(REPO / "configs" / "demo.yaml", ["train.amp=true", "train.channels_last=true"])
    rt = Runtime.from_config(cfg, DistInfo())
    assert (rt.device.type, rt.amp, rt.channels_last, rt.progress) == ("cpu", False, False, True)
    assert Runtime.from_config(cfg, DistInfo(rank=1, world_size=2)).progress is False
    with rt.autocast():  # disabled: no float16 on CPU
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_batches_reach_the_device_as_float_masks_and_images():
    rt = Runtime(torch.device("cpu"), channels_last=True)
    batch = {"image": torch.rand(2, 3, 4, 4), "mask": torch.ones(2, 1, 4, 4, dtype=torch.uint8)}
    masks = rt.masks(batch)
    assert masks.dtype == torch.float32 and masks.sum() == 32
    assert rt.images(batch).is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(Runtime(torch.device("cpu")).images(batch), batch["image"])  # unit: float pixels as they are
    pixels = {"image": torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)}
    imagenet = Runtime(torch.device("cpu"), normalize="imagenet").images(pixels).flatten()
    # (p / 255 - mean) / std by hand: (0 - 0.485) / 0.229, (0.2 - 0.456) / 0.224, (1 - 0.406) / 0.225
    assert torch.allclose(imagenet, torch.tensor([-2.117904, -1.142857, 2.64]), atol=1e-5)


def test_amp_dtype_choice_and_scaler():
    cpu = torch.device("cpu")
    assert amp_dtype("bfloat16", cpu) == torch.bfloat16 and amp_dtype("float16", cpu) == torch.float16
    assert amp_dtype("auto", cpu) == torch.float16  # bf16 only where a GPU supports it
    assert Runtime(cpu, amp=True, amp_dtype=torch.float16).needs_scaler
    assert not Runtime(cpu, amp=True, amp_dtype=torch.bfloat16).needs_scaler  # bf16 has float32's range
    assert not Runtime(cpu, amp=False).needs_scaler
    assert Runtime(cpu, amp=True, amp_dtype=torch.bfloat16, channels_last=True).describe() == (
        "cpu, AMP bfloat16, channels_last"
    )


def test_compile_is_opt_in_in_place_and_recorded(tmp_path):
    cfg = load_config(REPO / "configs" / "demo.yaml", ["train.compile=true", "train.amp_dtype=bfloat16"])
    assert (cfg.train.compile, cfg.train.amp_dtype, cfg.predict.compile) == (True, "bfloat16", False)
    assert read_saved_config(save_config(cfg, tmp_path / "config.yaml")).train == cfg.train  # in the run's config
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1))
    keys = list(model.state_dict())
    assert maybe_compile(model, False)._compiled_call_impl is None
    assert maybe_compile(model, True) is model and model._compiled_call_impl is not None  # compiled on first call
    assert list(model.state_dict()) == keys  # checkpoints keep their keys (no _orig_mod. prefix)
