"""Atomic binary writes: temp file in the target folder + fsync + ``os.replace``.

Readers (a tuning job polling ``runs/``, a resumed run) never see half a file. Text files use
``kseg.config.atomic_write_text``; this module covers torch checkpoints and anything streamed to disk.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch


def temp_path(path: str | Path, suffix: str = ".tmp") -> Path:
    """A fresh, unique temp file name next to ``path`` (created empty, so the name is reserved)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artefacts get the usual permissions
    return Path(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_file(path: str | Path) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: str | Path, path: str | Path) -> None:
    """fsync ``tmp`` then atomically rename it over ``path``."""
    fsync_file(tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``path``, on error it is removed."""
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(file)`` on a temp file, then atomically move it to ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()


class CorruptFileError(ValueError):
    """A file that exists but cannot be read back (truncated, corrupt, or not written by kseg)."""


def _check_zip(path: Path) -> None:
    """Verify the CRC32 of every member of a torch zip file: ``torch.load`` does not, and loads flipped bits."""
    if not zipfile.is_zipfile(path):
        return  # legacy (non-zip) torch format, or not a zip at all: torch.load decides
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except Exception as e:  # noqa: BLE001 - damaged headers raise BadZipFile, UnicodeDecodeError, EOFError...
        raise CorruptFileError(f"{path}: cannot read the checkpoint (corrupt zip structure; {type(e).__name__}: {e})") from e
    if bad is not None:
        raise CorruptFileError(f"{path}: cannot read the checkpoint (corrupt: {bad} fails its CRC check)")


def torch_load(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` whose failures name the file.

    Every member's CRC32 is checked first (torch itself loads flipped bits silently). A truncated or
    corrupt file, or one holding pickled objects beyond tensors and plain data (kseg never
    writes those; never retry with ``weights_only=False`` on a file you did not write), raises
    ``CorruptFileError``; a missing file raises ``FileNotFoundError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CorruptFileError(f"{path}: empty file (0 bytes), not a checkpoint")
    _check_zip(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, EOFError, UnpicklingError, zip errors...
        text = str(e).strip()
        why = "truncated or corrupt"
        if "Weights only load failed" in text:  # torch's advice (weights_only=False) is unsafe: leave it out
            m = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\s*\n|Check the documentation|$)", text, re.S)
            text = m.group(1) if m else ""
            why = "corrupt, or holding pickled objects other than tensors and plain data"
        detail = text.splitlines()[0].split(". ")[0][:160] if text else ""
        raise CorruptFileError(
            f"{path}: cannot read the checkpoint ({why}; {type(e).__name__}{': ' + detail if detail else ''})"
        ) from e


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` that never leaves a truncated file at ``path``."""
    atomic_write_bytes(path, lambda f: torch.save(obj, f))
