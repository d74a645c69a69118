"""Polling the kaggle CLI with backoff: a dataset version until it is ready, a kernel run until it ends."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from kseg.kernel.kaggle_cli import (
    TERMINAL_KERNEL_STATES,
    KaggleCLI,
    KaggleCLIError,
    parse_dataset_status,
    parse_kernel_status,
)

log = logging.getLogger(__name__)

__all__ = ["Backoff", "Sleep", "poll_kernel", "wait_dataset"]

Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Backoff:
    """Polling schedule: ``first`` seconds, times ``factor`` after each poll, at most ``most``; give up after
    ``timeout`` seconds."""

    first: float = 15.0
    factor: float = 1.5
    most: float = 300.0
    timeout: float = 10 * 3600.0
    retries: int = 3  # consecutive failed polls tolerated (network blips)

    def delays(self):
        delay = self.first
        while True:
            yield delay
            delay = min(delay * self.factor, self.most)


def wait_dataset(cli: KaggleCLI, dataset_id: str, backoff: Backoff, sleep: Sleep) -> tuple[str, int | None]:
    """Poll ``kaggle datasets status`` until the new version is ready; raises when it failed or timed out."""
    start = time.monotonic()
    use_json, failures = True, 0
    for delay in backoff.delays():
        res = cli("datasets", "status", dataset_id, *(["--format", "json"] if use_json else []))
        if use_json and res.returncode == 2 and "unrecognized arguments" in res.stderr:
            use_json = False  # kaggle CLI without --format: no version number
            continue
        try:
            status, version = parse_dataset_status(res)
            failures = 0
        except KaggleCLIError:
            failures += 1
            if failures > backoff.retries:
                raise
            status, version = "unknown", None
        log.info("dataset %s: %s", dataset_id, status)
        if status == "ready":
            return status, version
        if status in ("failed", "deleted"):
            raise KaggleCLIError(f"dataset {dataset_id}: processing ended with status {status!r}")
        if time.monotonic() - start > backoff.timeout:
            raise KaggleCLIError(f"dataset {dataset_id}: still {status!r} after {backoff.timeout:.0f}s")
        sleep(delay)
    raise AssertionError("unreachable")


def poll_kernel(
    cli: KaggleCLI, kernel_id: str, backoff: Backoff, sleep: Sleep, on_status: Callable[[str, str | None], None]
) -> tuple[str, str | None]:
    """Poll ``kaggle kernels status`` until a terminal state or the timeout; returns the last (status, message)."""
    start = time.monotonic()
    failures = 0
    status, message = "unknown", None
    for delay in backoff.delays():
        try:
            status, message = parse_kernel_status(cli("kernels", "status", kernel_id))
            failures = 0
            on_status(status, message)
        except KaggleCLIError as e:
            failures += 1
            if failures > backoff.retries:
                raise
            log.warning("status poll failed (%d/%d): %s", failures, backoff.retries, e)
        log.info("kernel %s: %s", kernel_id, status)
        if status in TERMINAL_KERNEL_STATES:
            return status, message
        if time.monotonic() - start > backoff.timeout:
            log.warning(
                "kernel %s still %s after %.0fs: check later with `kseg kernel status`",
                kernel_id,
                status,
                backoff.timeout,
            )
            return status, message
        sleep(delay)
    raise AssertionError("unreachable")
