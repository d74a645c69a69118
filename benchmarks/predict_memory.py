"""Peak RSS of `kseg predict` on N and 4N test images: memory must stay flat as the test set grows.

Two records, each from `kseg predict` run in a fresh process per test-set size (a warm-up run first, for
the page cache):

- ``predict_memory``: the synthetic demo (128x256 images, hvflip TTA, ``data.num_workers=0``: one process);
- ``carvana_predict_memory``: the Carvana miniature (16 full-size 1918x1280 JPEGs per car) with the tiny
  model of ``predict_speed.py`` at 128x128, ``data.num_workers=2`` (the overlapped path: DataLoader worker
  processes read and resize, the model runs one batch ahead in a thread, restore + encode + write in the
  main process), batch 8.

Each predict process runs ``kseg.cli.main`` under ``_peak_rss.py`` (same process), which records the peak
RSS of the main predict process alone (``getrusage(RUSAGE_SELF)``, threads included, children not) and the
largest peak RSS (``VmHWM``, sampled from /proc) of any one DataLoader worker, which counts the pages a forked
worker shares with the main process. (The old measure, ``RUSAGE_CHILDREN`` of a separate wrapper, was the max
over the main process and every child; with workers it would also charge an ``ldconfig -p`` that an import
forks the main process's whole RSS at that moment, see ``_peak_rss.py``.)
ratio = 1.10 / (main_4N / main_N), goal 1.0 (4x the images cost at most 10% more peak memory); the workers'
growth is recorded beside it. Submission row counts are checked against the images predicted.

    .venv/bin/python benchmarks/predict_memory.py [--n 64] [--batch-size 16] [--cars 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _common import REPO, write_results
from predict_speed import TINY


def make_checkpoint(config: Path, overrides: list[str]) -> None:
    """A random checkpoint of ``config``'s model (with ``overrides``) as fold 0's best.pt."""
    import torch

    from kseg.config import load_config
    from kseg.models import build_model, save_checkpoint

    cfg = load_config(config, overrides)
    torch.manual_seed(0)
    save_checkpoint(cfg.fold_dir(0) / "best.pt", build_model(cfg), cfg, epoch=0)


def measure(config: Path, out: Path, overrides: list[str], flags: list[str]) -> dict:
    """Run `kseg predict -c config --out out flags overrides` in a fresh process: {main_kb, workers_kb, seconds}."""
    stats_path = out.with_suffix(".rss.json")
    predict = ["predict", "-c", str(config), "--out", str(out), "--no-progress", *flags, *overrides]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(Path(__file__).with_name("_peak_rss.py")), str(stats_path), *predict]
    res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    if res.returncode:
        raise SystemExit(f"kseg predict failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return json.loads(stats_path.read_text())


def submission_rows(path: Path) -> int:
    """Data rows of a submission csv (header excluded)."""
    with path.open(newline="") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def measure_sizes(
    label: str, config: Path, sizes: tuple[int, int], make_root: Callable[[int], Path], run: dict, tmp: Path
) -> dict:
    """Measure both test-set sizes; ``make_root(size)`` writes the data (returns its root), ``run`` holds
    ``overrides``, ``flags`` and ``rows_per_image``. Returns {size: stats with images, load_1min}."""
    stats = {}
    for size in sizes:
        root = make_root(size)
        overrides = [f"data.root={root}", *run["overrides"]]
        measure(config, tmp / f"{label}-warm{size}.csv", overrides, run["flags"])  # warm the page cache
        load = os.getloadavg()[0]
        out = tmp / f"{label}-sub{size}.csv"
        s = measure(config, out, overrides, run["flags"])
        images = submission_rows(out) // run["rows_per_image"]
        assert images * run["rows_per_image"] == submission_rows(out), f"{out}: rows not a multiple of the classes"
        stats[size] = {**s, "images": images, "load_1min": [round(load, 2), round(os.getloadavg()[0], 2)]}
        print(
            f"{label} {images:4d} images: main {s['main_kb'] / 1024:7.1f} MiB, biggest worker "
            f"{s['workers_kb'] / 1024:7.1f} MiB, {s['seconds']:.1f}s, load {stats[size]['load_1min']}"
        )
    return stats


def record(name: str, stats: dict, sizes: tuple[int, int], **extra) -> dict:
    """The results record of two measured sizes: ratio = 1.10 / main-process RSS growth."""
    small, large = stats[sizes[0]], stats[sizes[1]]
    growth = large["main_kb"] / small["main_kb"]
    workers = large["workers_kb"] / small["workers_kb"] if small["workers_kb"] else None
    return {
        "name": name,
        "ratio": 1.10 / growth,
        "goal": 1.0,
        "images_n": small["images"],
        "images_4n": large["images"],
        "rss_n_mib": small["main_kb"] / 1024,
        "rss_4n_mib": large["main_kb"] / 1024,
        "rss_growth": growth,
        "worker_rss_n_mib": small["workers_kb"] / 1024,
        "worker_rss_4n_mib": large["workers_kb"] / 1024,
        "worker_rss_growth": workers,
        "worker_processes": large["workers"],
        "seconds_n": small["seconds"],
        "seconds_4n": large["seconds"],
        "load_1min_n": small["load_1min"],
        "load_1min_4n": large["load_1min"],
        **extra,
    }


def demo_record(n: int, batch_size: int, tmp: Path) -> dict:
    """``predict_memory``: the synthetic demo with N and 4N test images, one process."""
    from kseg.demo.synthetic import make_demo

    config, runs = REPO / "configs" / "demo.yaml", tmp / "demo-runs"
    make_checkpoint(config, [f"runs_dir={runs}"])
    overrides = [f"runs_dir={runs}", "data.num_workers=0", "train.device=cpu", f"predict.batch_size={batch_size}"]
    run = {"overrides": overrides, "flags": ["--tta", "hvflip"], "rows_per_image": 4}
    sizes = (n, 4 * n)
    stats = measure_sizes(
        "demo", config, sizes, lambda k: make_demo(tmp / f"demo{k}", seed=0, n_train=2, n_test=k), run, tmp
    )
    for k in sizes:
        assert stats[k]["images"] == k, f"{stats[k]['images']} images predicted of {k}"
    return record("predict_memory", stats, sizes, n=n, tta="hvflip", batch_size=batch_size, image_size=[128, 256])


def carvana_record(cars: int, workers: int, tmp: Path) -> dict:
    """``carvana_predict_memory``: the Carvana miniature with ``cars`` and 4x ``cars`` test cars (16 images each)."""
    from kseg.demo.registry import write_miniature

    config, runs = REPO / "configs" / "carvana" / "unet128.yaml", tmp / "carvana-runs"
    make_checkpoint(config, [f"runs_dir={runs}", *TINY])
    batch = ["predict.batch_size=8", f"data.num_workers={workers}", "train.device=cpu"]
    run = {"overrides": [f"runs_dir={runs}", *TINY, *batch], "flags": [], "rows_per_image": 1}
    sizes = (cars, 4 * cars)
    stats = measure_sizes(
        "carvana",
        config,
        sizes,
        lambda k: write_miniature("carvana", tmp / f"carvana{k}", n_train=1, n_test=k),
        run,
        tmp,
    )
    for k in sizes:
        assert stats[k]["images"] == 16 * k, f"{stats[k]['images']} images predicted of {16 * k}"
    extra = {"cars_n": cars, "workers": workers, "batch_size": 8, "size": [1280, 1918], "model_size": [128, 128]}
    return record("carvana_predict_memory", stats, sizes, **extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="demo test images of the small run (the large one has 4x)")
    ap.add_argument("--batch-size", type=int, default=16, help="demo predict batch size")
    ap.add_argument("--cars", type=int, default=3, help="Carvana test cars of the small run (16 images each; 4x)")
    ap.add_argument("--workers", type=int, default=2, help="Carvana DataLoader workers")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        records = [demo_record(args.n, args.batch_size, Path(tmp)), carvana_record(args.cars, args.workers, Path(tmp))]
    write_results("predict_memory", records)


if __name__ == "__main__":
    main()
