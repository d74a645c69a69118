"""Peak RSS of `kseg predict` on N and 4N test images: memory must stay flat as the test set grows.

Writes the synthetic demo competition with N and 4N test images, one tiny random checkpoint of the demo
model, then runs `kseg predict` (hvflip TTA, --save-probs off) in a fresh process for each and reads its
peak RSS from `getrusage(RUSAGE_CHILDREN)` of a fresh wrapper process. Record:
ratio = 1.10 / (rss_4N / rss_N), goal 1.0 (i.e. 4x the images cost at most 10% more peak memory).

    .venv/bin/python benchmarks/predict_memory.py [--n 64] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, write_results

WRAPPER = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
if rc.returncode:
    sys.stderr.write(rc.stderr[-4000:])
    sys.exit(rc.returncode)
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "seconds": time.perf_counter() - t}))
"""


def make_checkpoint(config: Path, runs: Path) -> None:
    import torch

    from kseg.config import load_config
    from kseg.models import build_model, save_checkpoint

    cfg = load_config(config, [f"runs_dir={runs}"])
    torch.manual_seed(0)
    save_checkpoint(cfg.fold_dir(0) / "best.pt", build_model(cfg), cfg, epoch=0)


def measure(config: Path, root: Path, runs: Path, out: Path, batch_size: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "kseg.cli",
        "predict",
        "-c",
        str(config),
        "--tta",
        "hvflip",
        "--out",
        str(out),
        "--no-progress",
        f"data.root={root}",
        f"runs_dir={runs}",
        "data.num_workers=0",
        "train.device=cpu",
        f"predict.batch_size={batch_size}",
    ]
    res = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, cwd=REPO)
    if res.returncode:
        raise SystemExit(f"kseg predict failed ({res.returncode}):\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="test images of the small run (the large one has 4x)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()

    from kseg.demo.synthetic import make_demo

    config = REPO / "configs" / "demo.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = tmp / "runs"
        make_checkpoint(config, runs)
        stats = {}
        for n in (args.n, 4 * args.n):
            root = make_demo(tmp / f"demo{n}", seed=0, n_train=2, n_test=n)
            measure(config, root, runs, tmp / f"warm{n}.csv", args.batch_size)  # warm the page cache
            start = time.perf_counter()
            stats[n] = measure(config, root, runs, tmp / f"sub{n}.csv", args.batch_size)
            stats[n]["wall"] = time.perf_counter() - start
            rows = sum(1 for _ in open(tmp / f"sub{n}.csv")) - 1
            assert rows == 4 * n, f"{rows} rows for {n} images"
            print(f"N={n:4d}: peak RSS {stats[n]['maxrss_kb'] / 1024:7.1f} MiB, {stats[n]['seconds']:.1f}s")
    small, large = stats[args.n], stats[4 * args.n]
    growth = large["maxrss_kb"] / small["maxrss_kb"]
    write_results(
        "predict_memory",
        [
            {
                "name": "predict_memory",
                "ratio": 1.10 / growth,
                "goal": 1.0,
                "n": args.n,
                "rss_n_mib": small["maxrss_kb"] / 1024,
                "rss_4n_mib": large["maxrss_kb"] / 1024,
                "rss_growth": growth,
                "seconds_n": small["seconds"],
                "seconds_4n": large["seconds"],
                "tta": "hvflip",
                "batch_size": args.batch_size,
                "image_size": [128, 256],
            }
        ],
    )


if __name__ == "__main__":
    main()
