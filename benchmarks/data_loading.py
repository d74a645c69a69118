"""Training DataLoader images/s, integer input path (after) vs the float path (before), 1 and 2 workers.

Sizes: TGS (101x101 reflect-padded to 128, real data from ../shared/data/tgs-salt when present), Severstal
(256x1600, synthetic) and Carvana (1918x1280 JPEGs resized to 1024x1024, the Carvana miniature), each with its
config's augmentations. ``before`` is ``data.pixels=float`` (float32 from decoding on, as kseg did until the
uint8 path, less the host-side normalisation pass it also made in the workers: the ratio is a lower bound);
``after`` is the default (uint8 through the loader, normalised on the device). ratio = after / before loader
images/s (goal 1.0: never slower). ``after_with_cpu_normalise`` adds ``model_input`` on this CPU (the worst
case, no GPU to do it). The rate needed to keep a GPU busy is the
GPU's step rate: ``gpu_step_reference`` (resnet34 U-Net AMP on one modern GPU) is a figure to compare with,
not measured here (see gpu.sh). ``loader_jpeg_draft_carvana_128_*`` compare ``data.jpeg_draft`` (libjpeg's
1/4-size decode before the area resize) with the full decode at the Carvana starter's 128x128.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

from kseg.config import load_config
from kseg.data.dataset import SegDataset, make_loader, read_labels
from kseg.data.pixels import model_input
from kseg.demo.registry import write_miniature
from kseg.demo.synthetic import make_demo

from _common import REPO, write_results

GPU_STEP_REFERENCE = {"tgs_128": 1500.0, "severstal_256x1600": 60.0, "carvana_1024": 40.0}  # images/s, context
WORKERS = (1, 2)


def loader_rate(cfg, ids, labels, batches: int, normalise_here: bool) -> float:
    """Steady images/s of the training loader over ``batches`` batches (worker start-up excluded)."""
    ds = SegDataset(cfg, ids, labels, train=True)
    loader = make_loader(ds, cfg, train=True, generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        if normalise_here:
            model_input(batch["image"], cfg.data.normalize)
        n += batch["image"].shape[0]
    return n / (time.perf_counter() - t0)


def cases(tmp: Path) -> list[tuple[str, str, list[str], int, int]]:
    """(name, config, overrides, batch size, batches timed)."""
    tgs = REPO.parent / "shared" / "data" / "tgs-salt"
    if tgs.is_dir():
        tgs_case = ("tgs_128", "configs/tgs-salt/unet-r34.yaml", [f"data.root={tgs}"], 32, 24)
    else:
        make_demo(tmp / "tgs", n_train=256, n_test=0, size=(101, 101))
        tgs_case = ("tgs_128", "configs/demo.yaml", [f"data.root={tmp / 'tgs'}", "data.image_size=[128,128]"], 32, 8)
    make_demo(tmp / "sev", n_train=48, n_test=0, size=(256, 1600))
    write_miniature("carvana", tmp / "carvana", n_train=2, n_test=0)  # 32 full-size JPEGs
    sev = [
        f"data.root={tmp / 'sev'}",
        "data.image_size=[256,1600]",
        "competition.image_size=[256,1600]",
        "competition.submission_size=[256,1600]",
        "data.augment=[{name: HorizontalFlip, params: {p: 0.5}}, {name: VerticalFlip, params: {p: 0.5}},"
        " {name: RandomBrightnessContrast, params: {p: 0.5}}]",
    ]
    carvana = [f"data.root={tmp / 'carvana'}", "data.image_size=[1024,1024]"]
    return [
        tgs_case,
        ("severstal_256x1600", "configs/demo.yaml", sev, 8, 5),
        ("carvana_1024", "configs/carvana/unet128.yaml", carvana, 4, 5),
    ]


def main() -> None:
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, config, overrides, bs, batches in cases(Path(tmp)):
            rates: dict[tuple[str, int], float] = {}
            for workers in WORKERS:
                for pixels in ("float", "uint8", "uint8+norm"):
                    cfg = load_config(
                        REPO / config,
                        [*overrides, f"data.num_workers={workers}", f"data.batch_size={bs}"]
                        + [f"data.pixels={pixels.split('+')[0]}", "model.encoder_weights=none"],
                    )
                    labels = read_labels(cfg)
                    ids = labels.image_id.tolist()
                    rates[pixels, workers] = loader_rate(cfg, ids, labels, batches, pixels.endswith("+norm"))
                before, after = rates["float", workers], rates["uint8", workers]
                records.append(
                    {
                        "name": f"loader_uint8_vs_float_{name}_{workers}w",
                        "ratio": after / before,
                        "goal": 1.0,
                        "before_images_per_s": round(before, 1),
                        "after_images_per_s": round(after, 1),
                        "after_with_cpu_normalise_images_per_s": round(rates["uint8+norm", workers], 1),
                        "gpu_step_reference_images_per_s": GPU_STEP_REFERENCE[name],
                        "batch_size": bs,
                        "workers": workers,
                        "load_1min": round(os.getloadavg()[0], 2),
                    }
                )
                print(f"{name} {workers}w: before {before:.1f} img/s, after {after:.1f} img/s", flush=True)
        records += draft_records(Path(tmp) / "carvana")
    write_results("data_loading", records)


def draft_records(root: Path) -> list[dict]:
    """Carvana at the starter's 128x128: the uint8 loader with ``data.jpeg_draft`` (1/4-size JPEG decode)
    against without (full decode + area resize), 1 and 2 workers; ratio = with / without (goal 1.0)."""
    out = []
    for workers in WORKERS:
        rates = {}
        for draft in (False, True):
            cfg = load_config(
                REPO / "configs/carvana/unet128.yaml",
                [f"data.root={root}", "data.image_size=[128,128]", f"data.num_workers={workers}", "data.batch_size=8"]
                + [f"data.jpeg_draft={str(draft).lower()}", "model.encoder_weights=none"],
            )
            labels = read_labels(cfg)
            rates[draft] = loader_rate(cfg, labels.image_id.tolist(), labels, 8, False)
        out.append(
            {
                "name": f"loader_jpeg_draft_carvana_128_{workers}w",
                "ratio": rates[True] / rates[False],
                "goal": 1.0,
                "before_images_per_s": round(rates[False], 1),
                "after_images_per_s": round(rates[True], 1),
                "workers": workers,
                "load_1min": round(os.getloadavg()[0], 2),
            }
        )
        print(f"carvana_128 {workers}w: full decode {rates[False]:.1f} img/s, jpeg_draft {rates[True]:.1f} img/s")
    return out


if __name__ == "__main__":
    main()
