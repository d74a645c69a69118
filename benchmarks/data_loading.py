"""Training DataLoader images/s (2 workers, the config's augmentations) vs the model's train step images/s.

Sizes: TGS (101x101 padded to 128, real data from ../shared/data/tgs-salt when present) and the
Severstal miniature (256x1600, synthetic). ratio = loader images/s / train-step images/s on this machine
(goal 1.0: the loader keeps up). On a GPU the step is far faster than here, so the loader rate is also
printed against a GPU-typical step rate (``gpu_step_reference``: resnet34 U-Net AMP on one modern GPU,
a figure to compare with, not measured here).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from kseg.config import load_config
from kseg.data.dataset import SegDataset, make_loader, read_labels
from kseg.demo.synthetic import make_demo
from kseg.losses import build_loss
from kseg.models import build_model

from _common import REPO, write_results

# Typical resnet34 U-Net AMP train-step rates on one modern data-centre GPU (images/s), for context only.
GPU_STEP_REFERENCE = {"tgs_128": 1500.0, "severstal_256x1600": 60.0}


def loader_rate(cfg, ids, labels, batches: int) -> float:
    ds = SegDataset(cfg, ids, labels, train=True)
    loader = make_loader(ds, cfg, train=True, generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    next(it)  # start-up of the workers is not part of the steady rate
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n += batch["image"].shape[0]
    return n / (time.perf_counter() - t0)


def step_rate(cfg, batch_size: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(cfg).train()
    loss_fn = build_loss(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    h, w = cfg.data.image_size
    x = torch.randn(batch_size, 3, h, w)
    y = (torch.rand(batch_size, cfg.competition.num_classes, h, w) > 0.7).float()

    def step() -> None:
        opt.zero_grad()
        loss, _ = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - t0)


def main() -> None:
    records = []
    tgs = REPO.parent / "shared" / "data" / "tgs-salt"
    with tempfile.TemporaryDirectory() as tmp:
        if tgs.is_dir():
            root = tgs
        else:  # synthetic stand-in at the TGS size
            root = Path(tmp) / "tgs"
            make_demo(root, n_train=64, n_test=0, size=(101, 101))
        cases = [
            (
                "tgs_128",
                "configs/tgs-salt/unet-r34.yaml" if tgs.is_dir() else "configs/demo.yaml",
                [f"data.root={root}", "data.image_size=[128,128]", "data.resize=pad"],
                32,
            ),
            (
                "severstal_256x1600",
                "configs/demo.yaml",
                [
                    f"data.root={Path(tmp) / 'sev'}",
                    "data.image_size=[256,1600]",
                    "competition.image_size=[256,1600]",
                    "competition.submission_size=[256,1600]",
                    "data.augment=[{name: HorizontalFlip, params: {p: 0.5}}, {name: VerticalFlip, params: {p: 0.5}},"
                    " {name: RandomBrightnessContrast, params: {p: 0.5}}]",
                ],
                4,
            ),
        ]
        make_demo(Path(tmp) / "sev", n_train=96, n_test=0, size=(256, 1600))
        for name, config, overrides, bs in cases:
            cfg = load_config(
                REPO / config,
                overrides
                + [
                    "data.num_workers=2",
                    f"data.batch_size={bs}",
                    "model.encoder=resnet34",
                    "model.encoder_weights=none",
                    "model.kwargs={}",
                    "model.aux_head=false",
                ],
            )
            labels = read_labels(cfg)
            ids = labels.image_id.tolist()[: 64 * bs]
            loader_ips = loader_rate(cfg, ids, labels, batches=max(8, min(len(ids), 1024) // bs - 1))  # steady state
            step_ips = step_rate(cfg, bs, steps=3)
            gpu_ref = GPU_STEP_REFERENCE[name]
            records.append(
                {
                    "name": f"loader_vs_step_{name}",
                    "ratio": loader_ips / step_ips,
                    "goal": 1.0,
                    "loader_images_per_s": round(loader_ips, 1),
                    "cpu_train_step_images_per_s": round(step_ips, 2),
                    "gpu_step_reference_images_per_s": gpu_ref,
                    "loader_vs_gpu_reference": round(loader_ips / gpu_ref, 2),
                    "batch_size": bs,
                    "workers": 2,
                    "encoder": "resnet34",
                }
            )
            print(
                f"{name}: loader {loader_ips:.1f} img/s, CPU train step {step_ips:.2f} img/s, "
                f"loader / GPU-typical step ({gpu_ref:.0f} img/s) = {loader_ips / gpu_ref:.2f}"
            )
    write_results("data_loading", records)


if __name__ == "__main__":
    main()
