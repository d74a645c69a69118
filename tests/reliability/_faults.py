"""Run ``kseg`` in a subprocess that freezes at a chosen point, so a test can SIGKILL it exactly there.

``python _faults.py <kseg args...>`` with ``KSEG_FAULT`` set installs one hook, then runs ``kseg.cli.main``:

- ``mid_epoch:<epoch>:<item>``: freeze when the training loader fetches item ``<item>`` (1-based, counted
  within the epoch) of 0-based epoch ``<epoch>``, i.e. in the middle of that epoch;
- ``before_rename:<file name>:<nth>``: freeze on the ``<nth>`` save of ``<file name>`` after the temp file
  is written and fsynced, before it is renamed over the target (a kill between write and rename).

When frozen it creates the file ``KSEG_FAULT_MARKER`` and sleeps; the test waits for the marker and kills.
The hooks only pause: they draw no random numbers and change nothing the run computes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

FREEZE_SECONDS = 600


def _freeze(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(FREEZE_SECONDS)


def install(spec: str, marker: str) -> None:
    """Install the hook described by ``spec`` (see the module doc)."""
    kind, *rest = spec.split(":")
    if kind == "mid_epoch":
        import kseg.train.data as data

        epoch, item = int(rest[0]), int(rest[1])
        original = data.EpochSeeded.__getitem__
        seen = {"n": 0}

        def getitem(self, key):  # type: ignore[no-untyped-def]
            if isinstance(key, tuple) and key[0] == epoch:
                seen["n"] += 1
                if seen["n"] == item:
                    _freeze(marker)
            return original(self, key)

        data.EpochSeeded.__getitem__ = getitem  # type: ignore[method-assign]
    elif kind == "before_rename":
        import kseg.atomic as atomic

        name, nth = rest[0], int(rest[1])
        original_commit = atomic.commit
        count = {"n": 0}

        def commit(tmp, path):  # type: ignore[no-untyped-def]
            if Path(path).name == name:
                count["n"] += 1
                if count["n"] == nth:
                    atomic.fsync_file(tmp)
                    _freeze(marker)
            return original_commit(tmp, path)

        atomic.commit = commit  # type: ignore[assignment]
    else:
        raise SystemExit(f"unknown KSEG_FAULT {spec!r}")


def run_and_kill(args: list[str], fault: str, marker: Path, cwd: Path, timeout: float = 300) -> str:
    """Run ``kseg <args>`` under ``fault``; SIGKILL it once frozen. Returns its output (stdout + stderr)."""
    env = {**os.environ, "KSEG_FAULT": fault, "KSEG_FAULT_MARKER": str(marker), "WANDB_MODE": "disabled"}
    log = cwd / f"kseg-{marker.stem}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, __file__, *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        deadline = time.time() + timeout
        try:
            while not marker.exists():
                if proc.poll() is not None:
                    raise AssertionError(
                        f"kseg exited with {proc.returncode} before the fault point:\n{log.read_text()[-3000:]}"
                    )
                if time.time() > deadline:
                    raise AssertionError(
                        f"kseg never reached the fault point in {timeout}s:\n{log.read_text()[-3000:]}"
                    )
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return log.read_text()


if __name__ == "__main__":
    install(os.environ["KSEG_FAULT"], os.environ["KSEG_FAULT_MARKER"])
    from kseg.cli import main

    sys.exit(main(sys.argv[1:]))
