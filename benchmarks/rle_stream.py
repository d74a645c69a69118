"""Streaming RLE (kseg.data.rle_stream.StripEncoder) vs the one-shot encoder on a 30,000 x 30,000 mask.

Each mode runs in a fresh process that builds the same synthetic glomerulus-like mask (discs on a jittered
grid, both dialects' hard case: runs crossing every strip boundary) and encodes it; the one-shot process
holds the whole mask, the streaming one only a strip. Peak RSS from ``getrusage`` of the child, encode time
measured inside it; both strings must be equal (sha256). Records (column order, the HuBMAP dialect):
``rle_stream_memory`` ratio = one-shot peak RSS / streaming peak RSS, goal 4 (bounded by the strip);
``rle_stream_time`` ratio = one-shot seconds / streaming seconds, goal 0.5 (at most 2x slower).

    .venv/bin/python benchmarks/rle_stream.py [--size 30000] [--strip 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _common import REPO, write_results

CHILD = """
import hashlib, json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[4])
from kseg.data.rle import RleDialect
from kseg.data.rle_stream import StripEncoder

size, strip, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
pitch = 400
rng = np.random.default_rng(0)
cells = size // pitch + 1
radius = rng.uniform(40, 150, size=(cells, cells)).astype(np.float32)
shift = rng.uniform(-100, 100, size=(cells, cells, 2)).astype(np.float32)
xs = np.arange(size, dtype=np.float32)

def rows(y0, y1):
    if y1 - y0 > 128:  # small temporaries: the generator must not dominate the streaming peak
        return np.concatenate([rows(y, min(y + 128, y1)) for y in range(y0, y1, 128)])
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    out = np.zeros((y1 - y0, size), np.uint8)
    cx = xs // pitch
    for cy in range(int(y0 // pitch) - 1, int((y1 - 1) // pitch) + 2):  # disc rows touching the strip
        if not 0 <= cy < cells:
            continue
        c = cx.astype(int)
        dy = ys - (cy * pitch + pitch / 2 + shift[cy, c, 0])
        dx = xs - (c * pitch + pitch / 2 + shift[cy, c, 1])
        out |= (dy * dy + dx * dx <= radius[cy, c] ** 2).astype(np.uint8)
    return out

dialect = RleDialect(order="column")
if mode == "oneshot":
    mask = np.concatenate([rows(y, min(y + strip, size)) for y in range(0, size, strip)])
    t = time.perf_counter()
    rle = dialect.encode(mask)
    seconds = time.perf_counter() - t
else:  # only the encoder's own time: the strips are generated outside the clock
    enc, seconds = StripEncoder((size, size), dialect), 0.0
    for y in range(0, size, strip):
        block = rows(y, min(y + strip, size))
        t = time.perf_counter()
        enc.add(block)
        seconds += time.perf_counter() - t
    t = time.perf_counter()
    rle = enc.finish()
    seconds += time.perf_counter() - t
print(json.dumps({"seconds": seconds, "sha": hashlib.sha256(rle.encode()).hexdigest(), "chars": len(rle),
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run(size: int, strip: int, mode: str) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(size), str(strip), mode, str(REPO / "src")], capture_output=True, text=True
    )
    if res.returncode:
        raise SystemExit(f"{mode} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=30000)
    ap.add_argument("--strip", type=int, default=1024)
    args = ap.parse_args()
    stream = run(args.size, args.strip, "stream")
    oneshot = run(args.size, args.strip, "oneshot")
    if stream["sha"] != oneshot["sha"]:
        raise SystemExit("streaming and one-shot RLE differ")
    for name, r in (("one-shot", oneshot), ("streaming", stream)):
        print(f"{name:<10} {r['seconds']:6.2f}s encode, peak RSS {r['maxrss_kb'] / 1024:8.1f} MiB, {r['chars']} chars")
    common = {"size": args.size, "strip": args.strip, "dialect": "column", "load": os.getloadavg()[0]}
    common |= {"stream_seconds": stream["seconds"], "oneshot_seconds": oneshot["seconds"]}
    common |= {"stream_rss_mib": stream["maxrss_kb"] / 1024, "oneshot_rss_mib": oneshot["maxrss_kb"] / 1024}
    write_results(
        "rle_stream",
        [
            {"name": "rle_stream_memory", "ratio": oneshot["maxrss_kb"] / stream["maxrss_kb"], "goal": 4.0, **common},
            {"name": "rle_stream_time", "ratio": oneshot["seconds"] / stream["seconds"], "goal": 0.5, **common},
        ],
    )


if __name__ == "__main__":
    main()
