"""Cutting the network off a child process, as Kaggle does for an offline kernel.

``unshare -n`` (root) or ``unshare -rn`` (a user namespace, for users allowed one) starts the process in
a fresh network namespace with no interface up: nothing, not even loopback, is reachable. Where neither
works, a ``sitecustomize`` socket guard makes every Python process of the environment refuse to create
internet (AF_INET/AF_INET6) sockets; the caller warns, since native code could still get through.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

__all__ = [
    "Isolation",
    "GUARD_MESSAGE",
    "GUARD_SOURCE",
    "probe_unshare",
    "resolve_isolation",
    "offline_prefix",
    "install_socket_guard",
]

Isolation = Literal["auto", "unshare", "guard", "none"]
GUARD_MESSAGE = "kseg rehearsal: network access is blocked (Kaggle runs this kernel offline)"

GUARD_SOURCE = f'''"""Installed by kseg kernel rehearse: no internet sockets in this environment."""
import errno as _errno
import socket as _socket_mod

_MESSAGE = {GUARD_MESSAGE!r}
_BLOCKED = (_socket_mod.AF_INET, _socket_mod.AF_INET6)


class _GuardedSocket(_socket_mod.socket):
    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        if fileno is None and (_socket_mod.AF_INET if family == -1 else family) in _BLOCKED:
            raise OSError(_errno.ENETUNREACH, _MESSAGE)
        super().__init__(family, type, proto, fileno)


def _refuse(*args, **kwargs):
    raise OSError(_errno.ENETUNREACH, _MESSAGE)


_socket_mod.socket = _GuardedSocket
_socket_mod.create_connection = _refuse
_socket_mod.getaddrinfo = _refuse
'''


@functools.lru_cache(maxsize=1)
def probe_unshare() -> tuple[str, ...] | None:
    """The working ``unshare`` prefix (``unshare -n`` or ``unshare -rn``), or None when neither works here."""
    exe = shutil.which("unshare")
    if exe is None:
        return None
    for prefix in ((exe, "-n"), (exe, "-rn")):
        try:
            proc = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if proc.returncode == 0:
            return prefix
    return None


def resolve_isolation(mode: Isolation) -> Literal["unshare", "guard", "none"]:
    """``auto`` -> ``unshare`` when it works for this user, else ``guard`` (with a warning)."""
    if mode == "auto":
        if probe_unshare() is not None:
            return "unshare"
        log.warning(
            "unshare -n is not permitted here: falling back to a Python socket guard, which native "
            "code could bypass (run as root or allow user namespaces for a real network cut)"
        )
        return "guard"
    if mode == "unshare" and probe_unshare() is None:
        raise RuntimeError("isolation 'unshare' requested but neither `unshare -n` nor `unshare -rn` works here")
    if mode not in ("unshare", "guard", "none"):
        raise ValueError(f"isolation: {mode!r} is not one of auto, unshare, guard, none")
    return mode


def offline_prefix(mode: Literal["unshare", "guard", "none"]) -> list[str]:
    """Command prefix that runs a program without network (empty for guard/none)."""
    if mode == "unshare":
        prefix = probe_unshare()
        assert prefix is not None
        return [*prefix, "--"]
    return []


def install_socket_guard(site_packages: Path) -> Path:
    """Write the guard as ``sitecustomize.py`` into an environment's site-packages; returns its path."""
    path = Path(site_packages) / "sitecustomize.py"
    path.write_text(GUARD_SOURCE)
    return path
