"""GPU figures (driver of ``gpu.sh``): training and inference speed of kseg's CUDA paths, and whether AMP learns.

On one GPU, in under 8 minutes, it measures for a resnet34 U-Net at the TGS (128x128) and Severstal (256x1600)
sizes: training images/s and peak GPU memory for fp32, AMP, AMP + channels_last and AMP + channels_last +
torch.compile (through kseg's ``Runtime``: device normalisation of uint8 batches, autocast dtype, GradScaler);
inference images/s without and with hflip TTA; the training loader's images/s (the real TGS data, the machine's
workers) against the measured step rate at the same batch; and a one-epoch TGS training on the real data in
``../shared/data/tgs-salt`` with fp32 and with AMP (their validation scores must agree within noise).
Results go to ``results/gpu.json`` with the GPU named; they are written only from a CUDA run.

``--cpu-smoke`` runs every stage on the CPU at toy sizes in seconds (a synthetic TGS-sized set stands in for the
real data, compile is skipped) and writes ``--out`` (never ``results/gpu.json``), so the script cannot rot
between GPU runs (tests/test_benchmarks_gpu.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from kseg.atomic import atomic_write_text
from kseg.config import load_config
from kseg.data.dataset import SegDataset, make_loader, read_labels
from kseg.demo.registry import write_miniature
from kseg.infer.ensemble import tta_proba
from kseg.losses import build_loss
from kseg.models import build_model
from kseg.train.runtime import Runtime, amp_dtype, maybe_compile
from kseg.tta import get_tta

from _common import REPO, RESULTS, machine

log = logging.getLogger("gpu_bench")
TGS = REPO.parent / "shared" / "data" / "tgs-salt"
VARIANTS = {  # name: (amp, channels_last, compile)
    "fp32": (False, False, False),
    "amp": (True, False, False),
    "amp_channels_last": (True, True, False),
    "amp_channels_last_compile": (True, True, True),
}


def _settings(smoke: bool) -> dict:
    if smoke:
        model = ["model.encoder=resnet18", "model.kwargs={encoder_depth: 3, decoder_channels: [32, 16, 8]}"]
        return {"sizes": {"tgs_128": ((32, 32), 2)}, "steps": 1, "model": model, "variants": ("fp32", "amp")}
    sizes = {"tgs_128": ((128, 128), 32), "severstal_256x1600": ((256, 1600), 8)}
    return {"sizes": sizes, "steps": 30, "model": [], "variants": tuple(VARIANTS)}


def _cfg(settings: dict, size: tuple[int, int], batch: int, *extra: str):
    overrides = ["model.encoder=resnet34", "model.encoder_weights=none", "model.kwargs={}", "model.aux_head=false"]
    overrides += [*settings["model"], f"data.image_size=[{size[0]}, {size[1]}]", f"data.batch_size={batch}"]
    return load_config(REPO / "configs/tgs-salt/unet-r34.yaml", [*overrides, "competition.image_size=null", *extra])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_rate(cfg, device: torch.device, variant: str, steps: int) -> dict:
    """Training images/s and peak memory of one variant on in-memory uint8 batches (normalised on the device)."""
    amp, channels_last, compiled = VARIANTS[variant]
    cuda = device.type == "cuda"
    rt = Runtime(
        device,
        amp=amp and cuda,
        channels_last=channels_last and cuda,
        amp_dtype=amp_dtype("auto", device),
        progress=False,
        normalize="imagenet",
    )
    torch.manual_seed(0)
    model = build_model(cfg).to(device).train()
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    maybe_compile(model, compiled)
    loss_fn = build_loss(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=rt.needs_scaler)
    bs, (h, w) = cfg.data.batch_size, cfg.data.image_size
    batch = {"image": torch.randint(0, 256, (bs, 3, h, w), dtype=torch.uint8), "mask": torch.rand(bs, 1, h, w) > 0.7}
    if cuda:
        batch = {k: v.pin_memory() for k, v in batch.items()}
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        x, y = rt.images(batch), rt.masks(batch)
        with rt.autocast():
            loss, _ = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(3 if compiled else 1):  # warm-up (compilation) is not part of the rate
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return {"images_per_s": round(steps * bs / seconds, 2), "peak_mem_mib": peak, "amp_dtype": str(rt.amp_dtype)}


def infer_rate(cfg, device: torch.device, tta: str, steps: int) -> float:
    """Inference images/s (AMP + channels_last on CUDA) of one model with ``tta``."""
    model = build_model(cfg).to(device).eval()
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    bs, (h, w) = 2 * cfg.data.batch_size, cfg.data.image_size
    x = torch.randn(bs, 3, h, w, device=device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    pairs, dtype = get_tta(tta), amp_dtype("auto", device)
    tta_proba(model, x, pairs, "binary", cuda, dtype)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        tta_proba(model, x, pairs, "binary", cuda, dtype)
    _sync(device)
    return steps * bs / (time.perf_counter() - start)


def loader_rate(cfg, root: Path, batches: int) -> float:
    """Training loader images/s on the TGS images at ``root`` (the machine's workers, up to 8)."""
    workers = min(8, os.cpu_count() or 1)
    cfg = cfg.replace(data=cfg.data.__class__(**{**cfg.data.__dict__, "root": str(root), "num_workers": workers}))
    labels = read_labels(cfg)
    loader = make_loader(SegDataset(cfg, labels.image_id.tolist(), labels, train=True), cfg, train=True)
    it = iter(loader)
    next(it)
    start, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            n += len(next(it)["id"])
        except StopIteration:
            it = iter(loader)
    return n / (time.perf_counter() - start)


def _train_args(root: Path, work: Path, smoke: bool, settings: dict) -> list[str]:
    """Config overrides of the one-epoch TGS trainings (fold 0; toy sizes on the CPU smoke run)."""
    args = [f"data.root={root}", f"data.folds_csv={work / 'folds.csv'}", "train.epochs=1"]
    args += ["model.encoder_weights=none", "wandb.mode=disabled", "train.log_images=0"]
    if smoke:
        args += [*settings["model"], "data.image_size=[32, 32]", "data.resize=resize", "data.num_workers=0"]
        args += ["data.n_folds=2", "data.batch_size=8", "competition.image_size=null", "train.device=cpu"]
    return args


def one_epoch(args: list[str], work: Path, amp: bool) -> dict:
    """Train fold 0 for one epoch with or without AMP; its validation score and wall time."""
    from kseg.cli import main as kseg

    runs = work / ("amp" if amp else "fp32")
    argv = ["train", "-c", str(REPO / "configs/tgs-salt/unet-r34.yaml"), "--fold", "0", *args]
    argv += [f"runs_dir={runs}", f"train.amp={amp}"]
    start = time.perf_counter()
    if kseg(argv) != 0:
        raise RuntimeError(f"kseg {' '.join(argv)} failed")
    metrics = pd.read_csv(next(runs.rglob("fold0/metrics.csv")))
    return {"val_metric": float(metrics.val_metric.iloc[-1]), "seconds": round(time.perf_counter() - start, 1)}


def _tgs_root(smoke: bool, tmp: Path) -> Path:
    """The real TGS data, or (smoke) the TGS miniature in the same file layout."""
    if not smoke and TGS.is_dir():
        return TGS
    return write_miniature("tgs-salt", tmp / "tgs", n_train=16, n_test=2)


def measure(smoke: bool, work: Path) -> list[dict]:
    """Every record of the run (see the module docstring)."""
    device = torch.device("cpu" if smoke else "cuda")
    settings = _settings(smoke)
    steps, records = settings["steps"], []
    for name, (size, bs) in settings["sizes"].items():
        cfg = _cfg(settings, size, bs)
        rates = {}
        for variant in settings["variants"]:  # the smoke run skips compile (minutes on a CPU)
            rates[variant] = train_rate(cfg, device, variant, steps)
            log.info("%s %s: %s", name, variant, rates[variant])
        for variant, r in rates.items():
            records.append(
                {
                    "name": f"train_{name}_{variant}",
                    "ratio": r["images_per_s"] / rates["fp32"]["images_per_s"],
                    "goal": 1.0,
                    **r,
                    "batch_size": bs,
                    "image_size": list(size),
                }
            )
        plain, hflip = infer_rate(cfg, device, "none", steps), infer_rate(cfg, device, "hflip", steps)
        records.append(
            {
                "name": f"infer_{name}_hflip_vs_none",
                "ratio": hflip / plain,
                "goal": 0.45,
                "none_images_per_s": round(plain, 2),
                "hflip_images_per_s": round(hflip, 2),
            }
        )
    tgs = _tgs_root(smoke, work)
    size, bs = settings["sizes"]["tgs_128"]
    step = max(rec["images_per_s"] for rec in records if rec["name"].startswith("train_tgs_128_"))
    loader = loader_rate(_cfg(settings, size, bs, "data.resize=resize" if smoke else "data.resize=pad"), tgs, steps)
    records.append(
        {
            "name": "loader_vs_gpu_step_tgs_128",
            "ratio": loader / step,
            "goal": 1.0,
            "loader_images_per_s": round(loader, 1),
            "step_images_per_s": step,
            "batch_size": bs,
            "workers": min(8, os.cpu_count() or 1),
        }
    )
    from kseg.cli import main as kseg

    args = _train_args(tgs, work, smoke, settings)
    if kseg(["folds", "-c", str(REPO / "configs/tgs-salt/unet-r34.yaml"), *args]) != 0:
        raise RuntimeError("kseg folds failed")
    fp32, amp = one_epoch(args, work, False), one_epoch(args, work, True)
    score = amp["val_metric"] / max(fp32["val_metric"], 1e-9)
    records.append({"name": "tgs_one_epoch_amp_vs_fp32_score", "ratio": score, "goal": 0.95, "fp32": fp32})
    records[-1].update(amp=amp, real_data=tgs == TGS)
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU, seconds; writes --out only")
    ap.add_argument("--out", type=Path, default=None, help="results file (default results/gpu.json on CUDA)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device; run on a GPU machine, or pass --cpu-smoke", file=sys.stderr)
        return 2
    out = args.out or (RESULTS / "gpu.json" if not args.cpu_smoke else None)
    if out is None or (args.cpu_smoke and out.resolve() == (RESULTS / "gpu.json").resolve()):
        print("gpu_bench: --cpu-smoke needs --out, and never results/gpu.json", file=sys.stderr)
        return 2
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        records = measure(args.cpu_smoke, Path(tmp))
    gpu = torch.cuda.get_device_name(0) if not args.cpu_smoke else None
    info = {**machine(), "gpu": gpu, "cpu_smoke": args.cpu_smoke, "torch": torch.__version__}
    info["seconds"] = round(time.perf_counter() - start, 1)
    for r in records:
        status = "met" if r["ratio"] >= r["goal"] else "NOT MET"
        print(f"{r['name']:<44} ratio {r['ratio']:8.2f}  goal {r['goal']:5.2f}  {status}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps([{**r, "machine": info} for r in records], indent=2, default=str) + "\n")
    print(f"wrote {out} in {info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
