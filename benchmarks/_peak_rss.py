"""Run ``kseg.cli.main`` in this process and write its peak memory to a json file.

    python benchmarks/_peak_rss.py STATS.json predict -c ... (any kseg command line)

Writes {"main_kb", "workers_kb", "workers", "seconds"}: ``main_kb`` is ``getrusage(RUSAGE_SELF).ru_maxrss``,
the peak RSS of this process alone (threads included, children not), read in the last ``atexit`` hook.
``workers_kb`` is the largest ``VmHWM`` (peak RSS of its address space) of any child process seen alive in at
least two samples of /proc/<pid>/status taken every 0.1 s (DataLoader workers; a forked worker's RSS counts the
pages it shares with this process); ``workers`` counts them. ``RUSAGE_CHILDREN`` is not used: it is the max over
every reaped child, and a short helper the imports fork and exec (``ldconfig -p``) is charged the whole RSS
of this process at the moment it forked.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import sys
import threading
import time


def children() -> set[str]:
    """Pids of this process's children (forked from any of its threads)."""
    pids: set[str] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.update(f.read().split())
        except OSError:  # the thread ended
            continue
    return pids


def vm_hwm_kb(pid: str) -> int | None:
    """``VmHWM`` of ``pid`` in kB, None when it is gone or has no address space."""
    try:
        with open(f"/proc/{pid}/status") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def sample(peaks: dict[str, list[int]], interval: float = 0.1) -> None:
    """Forever: {pid: [samples, max VmHWM kB]} of the children alive."""
    while True:
        for pid in children():
            kb = vm_hwm_kb(pid)
            if kb is not None:
                seen = peaks.setdefault(pid, [0, 0])
                seen[0], seen[1] = seen[0] + 1, max(seen[1], kb)
        time.sleep(interval)


def main() -> int:
    stats_path, argv = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    peaks: dict[str, list[int]] = {}

    def report() -> None:
        workers = [kb for n, kb in list(peaks.values()) if n >= 2]  # not the short-lived helpers
        stats = {
            "main_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "workers_kb": max(workers, default=0),
            "workers": len(workers),
            "seconds": time.perf_counter() - start,
        }
        with open(stats_path, "w") as f:
            json.dump(stats, f)

    # atexit runs the last registered first: registered before torch imports multiprocessing, this runs after
    # multiprocessing's own hook has stopped the DataLoader workers.
    atexit.register(report)
    threading.Thread(target=sample, args=(peaks,), daemon=True).start()
    from kseg.cli import main as kseg_main

    return kseg_main(argv)


if __name__ == "__main__":
    sys.exit(main())
