"""Wheels for the offline kernel: kseg itself (``pip wheel . --no-deps``) and the configured dependencies.

Dependencies (``kernel.wheels``) are pinned to the version installed here, so the kernel runs the code the
models were trained and tuned with, and fetched with ``pip download --no-deps --only-binary=:all:`` into a
cache folder (``KSEG_WHEEL_CACHE``, default ``.whl/``) that later builds reuse without the network.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

import kseg

log = logging.getLogger(__name__)

__all__ = [
    "WheelError",
    "default_cache_dir",
    "kseg_source_dir",
    "build_kseg_wheel",
    "pin_requirement",
    "wheel_name_version",
    "find_cached_wheel",
    "fetch_wheels",
]


class WheelError(RuntimeError):
    """A wheel could not be built or downloaded."""


def default_cache_dir() -> Path:
    """``$KSEG_WHEEL_CACHE`` or ``.whl/`` (git-ignored) in the working directory."""
    return Path(os.environ.get("KSEG_WHEEL_CACHE") or ".whl")


def _normalize(name: str) -> str:
    """PEP 503-ish name used in wheel file names: lowercase, runs of ``-_.`` -> ``_``."""
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_name_version(path: str | Path) -> tuple[str, str]:
    """``segmentation_models_pytorch-0.6.0-py3-none-any.whl`` -> ("segmentation_models_pytorch", "0.6.0")."""
    parts = Path(path).name.split("-")
    if len(parts) < 5 or not Path(path).name.endswith(".whl"):
        raise WheelError(f"{path}: not a wheel file name (name-version-...-platform.whl)")
    return _normalize(parts[0]), parts[1]


def kseg_source_dir() -> Path:
    """The source checkout kseg is installed from (the folder holding ``pyproject.toml``)."""
    here = Path(kseg.__file__).resolve().parent
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    raise WheelError(
        f"kseg at {here} is not installed from a source checkout (no pyproject.toml above it): "
        "install it with `pip install -e <checkout>` to build kernels"
    )


def _run_pip(args: list[str], what: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    log.debug("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise WheelError(f"{what} failed (pip exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def build_kseg_wheel(dest: Path, source: Path | None = None) -> Path:
    """Build ``kseg-<version>-py3-none-any.whl`` from ``source`` (default: this checkout) into ``dest``."""
    source = Path(source) if source else kseg_source_dir()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kseg-wheel-") as tmp:
        args = ["wheel", str(source), "--no-deps", "-w", tmp, "-q"]
        if importlib.util.find_spec("setuptools") is not None:
            args.append("--no-build-isolation")  # offline: the build backend is already here
        _run_pip(args, "building the kseg wheel")
        built = sorted(Path(tmp).glob("kseg-*.whl"))
        if len(built) != 1:
            raise WheelError(f"building the kseg wheel produced {[p.name for p in Path(tmp).iterdir()]}")
        target = dest / built[0].name
        shutil.move(str(built[0]), target)
    return target


def pin_requirement(spec: str) -> str:
    """``"timm"`` -> ``"timm==1.0.31"`` when installed here; specs with a version (or not installed) unchanged."""
    try:
        req = Requirement(spec)
    except InvalidRequirement as e:
        raise WheelError(f"kernel.wheels: {spec!r} is not a pip requirement ({e})") from e
    if req.specifier or req.url:
        return spec
    try:
        return f"{req.name}=={importlib.metadata.version(req.name)}"
    except importlib.metadata.PackageNotFoundError:
        log.warning("kernel.wheels: %s is not installed here; shipping the newest wheel pip finds", req.name)
        return spec


def find_cached_wheel(cache_dir: Path, spec: str) -> Path | None:
    """A wheel in ``cache_dir`` satisfying an exact ``name==version`` spec (None otherwise)."""
    req = Requirement(spec)
    pins = [s.version for s in req.specifier if s.operator == "=="]
    if len(pins) != 1 or not cache_dir.is_dir():
        return None
    want = (_normalize(req.name), pins[0])
    for path in sorted(cache_dir.glob("*.whl")):
        try:
            if wheel_name_version(path) == want:
                return path
        except WheelError:
            continue
    return None


def fetch_wheels(
    specs: list[str] | tuple[str, ...], dest: Path, cache_dir: Path | None = None, pip_args: tuple[str, ...] = ()
) -> list[Path]:
    """Copy a wheel per requirement into ``dest`` (cache first, else ``pip download --no-deps``)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for raw in specs:
        spec = pin_requirement(raw)
        path = find_cached_wheel(cache_dir, spec)
        if path is None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="kseg-dl-", dir=cache_dir) as tmp:
                _run_pip(
                    ["download", "--no-deps", "--only-binary=:all:", "-d", tmp, "-q", *pip_args, spec],
                    f"downloading the wheel of {spec!r} (kernel.wheels)",
                )
                got = sorted(Path(tmp).glob("*.whl"))
                if len(got) != 1:
                    names = [p.name for p in Path(tmp).iterdir()]
                    raise WheelError(f"pip download {spec!r} gave {names}, not one wheel")
                path = cache_dir / got[0].name
                shutil.move(str(got[0]), path)
            log.info("downloaded %s", path.name)
        else:
            log.info("wheel cache hit: %s", path.name)
        target = dest / path.name
        shutil.copy2(path, target)
        out.append(target)
    return out
