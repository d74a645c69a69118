"""``kseg kernel rehearse``: run the built kernel locally the way Kaggle runs it, before uploading anything.

A temporary ``/kaggle``-like root holds ``input/<competition>`` (the local competition data),
``input/<dataset-slug>`` (the built dataset) and ``working/``. The script runs in a fresh virtualenv that
sees the host's packages (the big frameworks, as the Kaggle image provides them) but not kseg's source:
kseg and the shipped dependencies come only from the dataset's wheels, installed with ``--no-index``.
The network is cut (``unshare -n``, else a socket guard). The rehearsal passes only if the script exits
0 and ``working/submission.csv`` validates against the local competition's sample submission.
"""

from __future__ import annotations

import logging
import os
import shutil
import site
import subprocess
import sys
import tempfile
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path

import kseg
from kseg.config import Config
from kseg.kernel.metadata import read_json, write_json
from kseg.kernel.offline import Isolation, install_socket_guard, offline_prefix, resolve_isolation
from kseg.layout import KAGGLE_INPUT, KAGGLE_WORKING, SMOKE_CSV, SUBMISSION_CSV, KernelLayout

log = logging.getLogger(__name__)

__all__ = ["RehearsalResult", "make_kaggle_root", "make_venv", "offline_env", "run_offline", "rehearse"]

ENV_ROOT = "KSEG_KAGGLE_ROOT"
PASS_THROUGH = (
    "LANG",
    "LC_ALL",
    "TZ",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "LD_LIBRARY_PATH",
)


@dataclass
class RehearsalResult:
    """Outcome of one rehearsal; ``passed`` needs exit code 0 and a valid submission."""

    passed: bool
    returncode: int
    seconds: float
    isolation: str
    log_path: Path
    submission: Path | None = None
    problems: list[str] = field(default_factory=list)
    workdir: Path | None = None  # kept only with keep=True
    warnings: list[str] = field(default_factory=list)  # e.g. it predicted nothing (an empty sample submission)


def make_kaggle_root(top: Path, competition_dirs: dict[str, Path]) -> Path:
    """``top/kaggle/{input/<name> -> folder (symlinks), working/}``; returns ``top/kaggle``."""
    root = top / "kaggle"
    (root / KAGGLE_WORKING).mkdir(parents=True)
    (root / KAGGLE_INPUT).mkdir()
    for name, folder in competition_dirs.items():
        if not folder.is_dir():
            raise FileNotFoundError(f"rehearsal input {name}: folder not found: {folder}")
        os.symlink(folder.resolve(), root / KAGGLE_INPUT / name, target_is_directory=True)
    return root


def _host_site_dirs() -> list[str]:
    """The host environment's site-packages folders (not kseg's source folder)."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and site.getusersitepackages() and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    dirs += [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
    kseg_src = str(Path(kseg.__file__).resolve().parent.parent)
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d) and str(Path(d).resolve()) != kseg_src]


def make_venv(folder: Path) -> tuple[Path, Path]:
    """A fresh virtualenv seeing the host's packages; returns (python, its site-packages).

    Like ``venv --system-site-packages`` where the "system" is the environment kseg runs in (itself often
    a virtualenv): host site-packages folders are added as plain paths, so their ``.pth`` files (kseg's
    editable install among them) are not processed and kseg can only come from the shipped wheel.
    """
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt", clear=True).create(folder)
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", "")},
    )
    site_packages = Path(out.stdout.strip())
    (site_packages / "_kseg_host_packages.pth").write_text("\n".join(_host_site_dirs()) + "\n")
    return python, site_packages


def offline_env(root: Path, home: Path, venv_dir: Path) -> dict[str, str]:
    """A minimal environment: the venv first on PATH, private HOME/TMPDIR, no proxies, pip config ignored."""
    env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
    bin_dir = venv_dir / ("Scripts" if os.name == "nt" else "bin")
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            ENV_ROOT: str(root),
            "VIRTUAL_ENV": str(venv_dir),
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "WANDB_MODE": "disabled",
            "TORCH_HOME": str(home / "torch"),
            "HF_HOME": str(home / "hf"),
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
        }
    )
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def run_offline(
    cmd: list[str],
    isolation: str,
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    timeout: float | None = None,
    echo: bool = True,
) -> int:
    """Run ``cmd`` with the network cut (``unshare`` prefix for that mode), teeing output to ``log_path``."""
    full = offline_prefix(isolation) + cmd  # type: ignore[arg-type]
    log.info("running offline (%s): %s", isolation, " ".join(full))
    deadline = None if timeout is None else time.monotonic() + timeout
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(
            full, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            logf.write(line)
            if echo:
                sys.stdout.write(line)
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
                logf.write(f"\n[kseg] rehearsal killed after {timeout:.0f}s\n")
                break
        try:
            return proc.wait(timeout=None if deadline is None else max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            logf.write(f"\n[kseg] rehearsal killed after {timeout:.0f}s\n")
            return 124


def _built_kernel(cfg: Config) -> tuple[KernelLayout, dict, dict]:
    """(the build folder as an absolute layout, its kernel metadata, its manifest); raises unless built for ``cfg``."""
    built = cfg.kernel_layout
    build = KernelLayout(built.root.resolve())  # the script runs in another folder: no relative paths
    if not build.kernel_metadata.is_file() or not build.dataset.is_dir():
        raise FileNotFoundError(f"no built kernel in {built.root}: run `kseg kernel build -c <config>` first")
    meta = read_json(build.kernel_metadata)
    manifest = read_json(build.manifest)
    if manifest.get("experiment") != cfg.name:
        raise ValueError(f"{build.dataset}: built for experiment {manifest.get('experiment')!r}, not {cfg.name!r}")
    return build, meta, manifest


def _run_script(
    cfg: Config,
    work: Path,
    build: KernelLayout,
    meta: dict,
    competition: str,
    mode: str,
    timeout: float | None,
    echo: bool,
) -> tuple[int, Path]:
    """Run the kernel script in a Kaggle-like root (``competition`` and the dataset as inputs) and a fresh
    venv under ``work``; returns (exit code, where its submission should be)."""
    slug = meta["dataset_sources"][0].split("/", 1)[1]
    kaggle = make_kaggle_root(work, {competition: cfg.data_root, slug: build.dataset})
    python, site_packages = make_venv(work / "venv")
    if mode == "guard":
        install_socket_guard(site_packages)
    env = offline_env(kaggle, work / "home", work / "venv")
    script = build.kernel / meta["code_file"]
    rc = run_offline([str(python), str(script)], mode, env, kaggle / KAGGLE_WORKING, build.rehearsal_log, timeout, echo)
    return rc, kaggle / KAGGLE_WORKING / SUBMISSION_CSV


def _no_rows_warning(cfg: Config, build: KernelLayout, smoke: Path, problems: list[str]) -> str:
    """The warning of a submission without rows; the kernel's smoke test output (which the kernel validated
    against its own sample of training ids) is kept next to the rehearsal log."""
    from kseg.competition import read_csv

    sample = cfg.data_root / cfg.competition.sample_submission
    text = (
        f"the kernel predicted no test images: {sample} has no rows (Kaggle fills an empty public sample, "
        "as UW-Madison's, only when it scores the kernel)"
    )
    if not smoke.is_file():
        return text + "; no smoke test ran on training images (kernel.smoke_images=0?)"
    shutil.copy2(smoke, build.rehearsal_smoke)
    rows = len(read_csv(smoke))
    if not rows:
        problems.append(f"{build.rehearsal_smoke}: the smoke test wrote no rows")
    return text + f"; its smoke test predicted training images instead: {rows} rows in {build.rehearsal_smoke}"


def _check_output(
    cfg: Config, build: KernelLayout, rc: int, produced: Path, warnings: list[str]
) -> tuple[Path | None, list[str]]:
    """Copy the ``produced`` submission next to the rehearsal log and validate it; (its copy, problems).

    A valid submission without rows (the local sample submission has none) passes, with a ``warnings`` line:
    the model never ran.
    """
    from kseg.submission.validate import validate_submission

    problems: list[str] = []
    submission = None
    if rc != 0:
        problems.append(f"kernel script exited with code {rc} (log: {build.rehearsal_log})")
    if not produced.is_file():
        problems.append(f"{KAGGLE_WORKING}/{SUBMISSION_CSV} was not written")
    else:
        submission = build.rehearsal_submission
        shutil.copy2(produced, submission)
        report = validate_submission(submission, cfg)
        problems += report.problems
        if report.ok and not report.rows:
            warnings.append(_no_rows_warning(cfg, build, produced.with_name(SMOKE_CSV), problems))
    return submission, problems


def rehearse(
    cfg: Config, isolation: Isolation = "auto", timeout: float | None = 7200.0, keep: bool = False, echo: bool = True
) -> RehearsalResult:
    """Run ``kernels/<exp>/kernel/<script>`` offline on the local competition data; see module doc.

    Writes ``kernels/<exp>/rehearsal/{rehearsal.log, submission.csv, rehearsal.json}``.
    """
    build, meta, manifest = _built_kernel(cfg)
    mode = resolve_isolation(isolation)
    shutil.rmtree(build.rehearsal, ignore_errors=True)
    build.rehearsal.mkdir(parents=True)
    log_path = build.rehearsal_log

    work = Path(tempfile.mkdtemp(prefix="kseg-rehearse-"))
    warnings: list[str] = []
    start = time.time()
    try:
        rc, produced = _run_script(cfg, work, build, meta, manifest["competition"], mode, timeout, echo)
        seconds = time.time() - start
        submission, problems = _check_output(cfg, build, rc, produced, warnings)
    finally:
        if keep:
            log.info("rehearsal folder kept: %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    result = RehearsalResult(
        not problems, rc, seconds, mode, log_path, submission, problems, work if keep else None, warnings
    )
    for w in warnings:
        log.warning("%s", w)
    write_json(
        build.rehearsal_record,
        {
            "passed": result.passed,
            "returncode": rc,
            "seconds": round(seconds, 1),
            "isolation": mode,
            "problems": problems,
            "warnings": warnings,
            "script": str(build.kernel / meta["code_file"]),
        },
    )
    return result
