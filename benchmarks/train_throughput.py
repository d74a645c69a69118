"""Train throughput (images/s) of a resnet34 U-Net: kseg's training loop vs a bare PyTorch step.

Both run the same model, loss (bce + dice) and AdamW on the same in-memory batches, so data loading is
excluded and ``ratio`` = kseg loop images/s / bare step images/s measures the loop's overhead
(accumulation bookkeeping, finite checks, EMA hook, progress bar). The absolute CPU images/s at the demo
(128x256) and TGS (101 -> 128x128) sizes are recorded as details; on a CUDA machine the GPU numbers
(AMP + channels_last) are measured too.

    .venv/bin/python benchmarks/train_throughput.py [--steps 6] [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from kseg.config import load_config
from kseg.losses import build_loss
from kseg.models import build_model
from kseg.optim import build_optimizer, build_scheduler
from kseg.train.dist import DistInfo
from kseg.train.loop import Runtime, train_one_epoch

from _common import REPO, write_results

CASES = [  # name, config, image size, batch size
    ("demo_128x256", "configs/demo.yaml", (128, 256), 8),
    ("tgs_128x128", "configs/tgs-salt/unet-r34.yaml", (128, 128), 16),
]


def bare_steps(model, loss_fn, opt, batches, rt) -> None:
    model.train()
    for b in batches:
        x, y = rt.images(b), rt.masks(b)
        with rt.autocast():
            out = model(x)
        loss, _ = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if rt.device.type == "cuda":
        torch.cuda.synchronize()


def measure(config: str, size: tuple[int, int], bs: int, device: str, steps: int, repeat: int) -> dict:
    cfg = load_config(
        REPO / config,
        [
            "model.encoder=resnet34",
            "model.encoder_weights=none",
            "model.kwargs={}",
            "model.aux_head=false",
            f"data.image_size=[{size[0]}, {size[1]}]",
            f"data.batch_size={bs}",
            f"train.device={device}",
            "loss=[{name: bce, weight: 0.5}, {name: dice, weight: 0.5}]",
            "optim.name=adamw",
            "sched.name=none",
        ],
    )
    info = DistInfo(device=torch.device(device))
    rt = Runtime.from_config(cfg, info)
    rt = dataclasses.replace(rt, progress=False)  # keeps the AMP dtype chosen for the device
    torch.manual_seed(0)
    model = build_model(cfg).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg).to(rt.device)
    opt = build_optimizer(cfg, model.parameters())
    sched = build_scheduler(cfg, opt, steps)
    scaler = torch.amp.GradScaler("cuda", enabled=rt.needs_scaler)  # float16 only: bfloat16 needs none
    c = cfg.competition.num_classes
    batches = [
        {
            "image": torch.randn(bs, 3, *size),
            "mask": (torch.rand(bs, c, *size) > 0.7).float(),
            "id": [str(i) for i in range(bs)],
        }
        for _ in range(steps)
    ]
    bare_steps(model, loss_fn, opt, batches[:2], rt)  # warm up allocator / kernels
    bare, loop = [], []
    for _ in range(repeat):  # interleaved so load from other processes hits both alike
        t = time.perf_counter()
        bare_steps(model, loss_fn, opt, batches, rt)
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        train_one_epoch(model, model, batches, loss_fn, opt, sched, scaler, None, cfg, rt, info, desc="bench")
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        loop.append(time.perf_counter() - t)
    n = steps * bs
    return {
        "bare_images_per_s": round(n / min(bare), 2),
        "kseg_images_per_s": round(n / min(loop), 2),
        "batch_size": bs,
        "image_size": list(size),
        "steps": steps,
        "repeat": repeat,
        "threads": torch.get_num_threads(),
        "device": str(rt.device),
        "amp": rt.amp,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    records = []
    for device in devices:
        for name, config, size, bs in CASES:
            steps = args.steps * (10 if device == "cuda" else 1)
            r = measure(config, size, bs, device, steps, args.repeat)
            records.append(
                {
                    "name": f"train_loop_vs_bare_step_{device}_{name}",
                    "ratio": round(r["kseg_images_per_s"] / r["bare_images_per_s"], 3),
                    "goal": 0.9,
                    "encoder": "resnet34",
                    **r,
                }
            )
    write_results("train_throughput", records)


if __name__ == "__main__":
    main()
