"""Shared helpers for benchmark scripts: timing and the results/<name>.json record format."""

from __future__ import annotations

import json
import os
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from kseg.atomic import atomic_write_text  # noqa: E402 - after the path insert


def best_time(fn: Callable[[], object], number: int = 1, repeat: int = 5) -> float:
    """Best wall time of one call of ``fn`` (seconds) over ``repeat`` rounds of ``number`` calls."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def machine() -> dict[str, object]:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def write_results(name: str, records: list[dict]) -> Path:
    """Print each record as ``name: ratio (goal)`` and write ``results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    for r in records:
        status = "met" if r["ratio"] >= r["goal"] else "NOT MET"
        print(f"{r['name']:<40} ratio {r['ratio']:8.2f}  goal {r['goal']:6.2f}  {status}")
    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps([{**r, "machine": machine()} for r in records], indent=2) + "\n")
    return path
