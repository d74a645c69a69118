"""Atomic writes, the one place kseg writes artefacts: temp file next to the target, fsync, ``os.replace``.

Readers (a tuning job polling ``runs/``, a resumed run, a kernel picking up a submission) never see half a
file; a write that fails leaves the previous file untouched and no temp file behind.

- ``atomic_write_text`` / ``atomic_write_bytes``: a whole text or binary file (bytes, or a callable that
  writes into the open file, e.g. ``np.save``);
- ``AtomicFile``: an open file for streaming writers (csv writers, ``savefig``): a context manager that
  yields the file, or an object with ``commit()`` / ``abort()`` for writers that live longer;
- ``atomic_path``: a temp *path* for writers that open it themselves (memmaps);
- ``atomic_torch_save`` / ``torch_load``: checkpoints (torch is imported only when they are called).

Files get the permissions a plain ``open`` gives (``0o666 & ~umask``, 0644 under the usual umask 022), not
``tempfile.mkstemp``'s 0600: the temp file is created with ``O_EXCL`` and mode 0o666, so the kernel applies
the umask (and any default ACL) itself. Temp names are ``.<name>.<random><suffix>``, which
``kseg.train.preflight.remove_stale_temps`` recognises after a kill.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

_NAME_TRIES = 100


def _create_temp(path: Path, suffix: str) -> tuple[int, Path]:
    """Create a new, empty temp file next to ``path`` with mode ``0o666 & ~umask``: (open fd, its path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(_NAME_TRIES):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        with contextlib.suppress(FileExistsError):
            return os.open(tmp, flags, 0o666), tmp
    raise FileExistsError(f"{path.parent}: no free temp file name for {path.name} after {_NAME_TRIES} tries")


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def temp_path(path: str | Path, suffix: str = ".tmp") -> Path:
    """A fresh, unique temp file name next to ``path`` (created empty, so the name is reserved)."""
    fd, tmp = _create_temp(Path(path), suffix)
    os.close(fd)
    return tmp


def fsync_file(path: str | Path) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: str | Path, path: str | Path) -> None:
    """fsync ``tmp`` then atomically rename it over ``path`` (every atomic write ends here)."""
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
        _unlink(tmp)
        raise


class AtomicFile:
    """A file written under a temp name next to ``path`` and renamed over ``path`` by ``commit()``.

    As a context manager it yields the open file; it commits when the block ends and removes the temp file
    when the block raises:

    >>> with AtomicFile("sub.csv", newline="") as f:  # doctest: +SKIP
    ...     csv.writer(f).writerows(rows)

    A writer that outlives one block keeps the object and calls ``commit()`` or ``abort()`` itself.
    ``mode`` is ``"w"`` (text; ``newline`` and ``encoding`` as for ``open``) or ``"wb"``.
    """

    def __init__(
        self,
        path: str | Path,
        mode: str = "w",
        *,
        newline: str | None = None,
        encoding: str | None = None,
        suffix: str = ".tmp",
    ) -> None:
        if mode not in ("w", "wt", "wb"):
            raise ValueError(f"AtomicFile({path}): mode must be 'w' or 'wb', got {mode!r}")
        self.path = Path(path)
        fd, self.tmp = _create_temp(self.path, suffix)
        try:
            self.file: IO[Any] = os.fdopen(fd, mode, newline=newline, encoding=encoding)
        except BaseException:
            os.close(fd)
            _unlink(self.tmp)
            raise
        self.done = False

    def commit(self) -> Path:
        """Close the file, fsync it and rename it over ``path``; returns ``path``. On error nothing moves."""
        if self.done:
            raise RuntimeError(f"{self.path}: this atomic write was already committed or aborted")
        try:
            self.file.close()
            commit(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self.done = True
        return self.path

    def abort(self) -> None:
        """Close and remove the temp file; ``path`` keeps what it held. Safe to call more than once."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self.file.close()
        _unlink(self.tmp)

    def __enter__(self) -> IO[Any]:
        return self.file

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def atomic_write_text(path: str | Path, text: str, *, newline: str | None = None, encoding: str | None = None) -> None:
    """Write ``text`` to ``path`` atomically (``newline`` / ``encoding`` as for ``open``)."""
    with AtomicFile(path, "w", newline=newline, encoding=encoding) as f:
        f.write(text)


def atomic_write_bytes(path: str | Path, data: bytes | Callable[[IO[bytes]], Any]) -> None:
    """Write ``data`` to ``path`` atomically: bytes, or a callable ``data(file)`` that writes them."""
    with AtomicFile(path, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data)


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
        raise CorruptFileError(
            f"{path}: cannot read the checkpoint (corrupt zip structure; {type(e).__name__}: {e})"
        ) from e
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
    import torch  # here, not at import time: text-only writers need not load torch

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
    import torch

    atomic_write_bytes(path, lambda f: torch.save(obj, f))
