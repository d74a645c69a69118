"""``kseg kernel build``: package an experiment for an offline Kaggle kernel under ``kernels/<exp>/``.

Layout (a build output: rebuilt from scratch every time, never edited by hand)::

    kernels/<exp>/dataset/   dataset-metadata.json, kseg-manifest.json, config.yaml, competition.yaml,
                             runs/<run>/fold<K>/best.pt, runs/<run>/{config.yaml,postprocess.json},
                             runs/<exp>/{ensemble.json,postprocess.json,config.yaml} (a kseg ensemble)
                             wheels/kseg-*.whl + the kernel.wheels dependencies
    kernels/<exp>/kernel/    kernel-metadata.json, <kernel-slug>.py

``push.json`` (written by push/status) lives next to them and survives rebuilds.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kseg import __version__
from kseg.atomic import atomic_write_text
from kseg.config import Config, save_config
from kseg.infer.checkpoints import find_checkpoints
from kseg.infer.pipeline import ALLOW_MISMATCH_FLAG, check_postprocess_ensemble, chosen_members
from kseg.kernel.budget import RunTimeEstimate, check_budget, estimate_run_time
from kseg.kernel.metadata import competition_slug, write_json, write_metadata
from kseg.kernel.script import render_script
from kseg.kernel.slugs import KernelNames, kaggle_username, kernel_names
from kseg.kernel.wheels import build_kseg_wheel, fetch_wheels
from kseg.layout import CONFIG, DATASET_METADATA, KernelLayout, RunLayout
from kseg.typed import to_dict

log = logging.getLogger(__name__)

__all__ = [
    "BuildResult",
    "PLACEHOLDER_USER",
    "DATASET_MAX_BYTES",
    "build_kernel",
    "size_table",
    "git_state",
]

PLACEHOLDER_USER = "your-kaggle-username"  # until push fills in the real one
# Kaggle's documented limit (kaggle.com/docs/datasets): 100 GB per dataset; private datasets also count
# against the account's private quota (about 100 GB). Not checked against the live site from here.
DATASET_MAX_BYTES = 100 * 10**9
UPLOAD_SKIPPED = (DATASET_METADATA,)  # the kaggle CLI reads it, never uploads it


@dataclass
class BuildResult:
    """What ``build_kernel`` wrote."""

    root: Path
    names: KernelNames
    files: list[tuple[str, int]]  # (path relative to dataset/, bytes), sorted
    script: Path
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    estimate: RunTimeEstimate | None = None  # the run-time budget check (kseg.kernel.budget)

    @property
    def dataset_dir(self) -> Path:
        return KernelLayout(self.root).dataset

    @property
    def kernel_dir(self) -> Path:
        return KernelLayout(self.root).kernel

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)


def git_state(folder: Path | None = None) -> tuple[str | None, bool]:
    """(HEAD commit, tracked files modified) of the git checkout at ``folder`` (cwd); (None, False) outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=30)
        if head.returncode:
            return None, False
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return head.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard link (checkpoints are written by rename, so a link never sees a later change), else copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def size_table(files: list[tuple[str, int]]) -> str:
    """A per-file size table with a total line."""
    width = max([len(p) for p, _ in files] + [5])
    lines = [f"{'file':<{width}}  {'size':>10}"]
    lines += [f"{p:<{width}}  {_human(s):>10}" for p, s in files]
    lines.append(f"{'total':<{width}}  {_human(sum(s for _, s in files)):>10}  ({len(files)} files)")
    return "\n".join(lines)


def _ship_runs(cfg: Config, runs: list[str], folds: tuple[int, ...], build: KernelLayout, warnings: list[str]) -> dict:
    """Copy each run's fold checkpoints, config.yaml and postprocess.json into ``build``; returns {run: [folds]}."""
    shipped = {}
    for run in runs:
        ckpts = find_checkpoints(cfg.runs_dir, run, folds)
        src, dst = RunLayout(Path(cfg.runs_dir), run), build.run(run)
        for fold, path in ckpts:
            _link_or_copy(path, dst.best(fold))
        for have, ship in ((src.config, dst.config), (src.postprocess, dst.postprocess)):
            if have.is_file():
                shutil.copy2(have, ship)
            elif have == src.postprocess and run == cfg.name:
                warnings.append(
                    f"{have} not found: the kernel predicts with default post-processing (run `kseg tune` first)"
                )
        shipped[run] = [f for f, _ in ckpts]
    src, dst = cfg.layout, build.run(cfg.name)
    if src.ensemble.is_file():  # kseg ensemble's choice: predict on Kaggle reads it as here
        dst.root.mkdir(parents=True, exist_ok=True)
        for have, ship in ((src.ensemble, dst.ensemble), (src.postprocess, dst.postprocess), (src.config, dst.config)):
            if have.is_file():
                shutil.copy2(have, ship)
    return shipped


def _dataset_files(folder: Path, skip: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """(path relative to ``folder``, bytes) of every file under it but those named in ``skip``, sorted."""
    return sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size)
        for p in folder.rglob("*")
        if p.is_file() and p.name not in skip
    )


def _resolve_user(user: str | None, warnings: list[str]) -> str | None:
    """``user``, else the configured Kaggle username; warns (placeholder metadata) when there is none."""
    user = user or kaggle_username()
    if not user:
        warnings.append(
            f"no Kaggle username (KAGGLE_USERNAME or kaggle.json): metadata uses {PLACEHOLDER_USER!r} "
            "until `kseg kernel push` fills in yours"
        )
    return user


def _manifest(
    cfg: Config,
    names: KernelNames,
    user: str | None,
    shipped: dict,
    predict_args: list[str],
    wheel_dir: Path,
    files: list[tuple[str, int]],
) -> dict:
    """The ``kseg-manifest.json`` contents: what was shipped, from which code, for which Kaggle ids."""
    commit, dirty = git_state()
    return {
        "experiment": cfg.name,
        "runs": shipped,
        "competition": competition_slug(cfg),
        "dataset_id": names.dataset_id,
        "kernel_id": names.kernel_id,
        "user_resolved": bool(user),
        "kseg_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "predict_args": predict_args,
        "wheels": sorted(p.name for p in wheel_dir.glob("*.whl")),
        "files": dict(files),
    }


def _script_settings(cfg: Config, names: KernelNames, runs: list[str], predict_args: list[str]) -> dict:
    """The ``SETTINGS`` the kernel script is rendered with."""
    return {
        "experiment": cfg.name,
        "runs": runs,
        "dataset_slug": names.dataset_slug,
        "competition_dirs": list(dict.fromkeys([competition_slug(cfg), cfg.competition.name])),
        "sample_submission": cfg.competition.sample_submission,
        "test_images": cfg.competition.test_images,
        "config": CONFIG,  # stage.config, relative to the dataset
        "predict_args": predict_args,
        "overrides": [],
    }


@dataclass(frozen=True)
class _BuildRequest:
    """The resolved arguments of one ``build_kernel`` call."""

    names: KernelNames
    user: str | None
    runs: list[str]
    folds: tuple[int, ...]
    tta: str | None
    wheels: tuple[str, ...]
    cache_dir: Path | None
    allow_postprocess_mismatch: bool
    weights: dict[str, float] | None = None  # kseg ensemble's experiment weights (ensemble.json)


def _write_stage(cfg: Config, req: _BuildRequest, stage: KernelLayout, warnings: list[str]) -> str:
    """Write the whole build (dataset and kernel) into the empty ``stage``; returns the script's file name."""
    dataset = stage.dataset
    dataset.mkdir(parents=True)
    stage.kernel.mkdir()
    shipped = _ship_runs(cfg, req.runs, req.folds, stage, warnings)
    mismatch = check_postprocess_ensemble(
        cfg.layout.postprocess,
        shipped,
        req.tta or cfg.predict.tta,
        allow=req.allow_postprocess_mismatch,
        weights=req.weights,
    )
    save_config(cfg, stage.config)
    atomic_write_text(stage.competition, yaml.safe_dump(to_dict(cfg.competition), sort_keys=False))
    wheel_dir = stage.wheels
    build_kseg_wheel(wheel_dir)
    fetch_wheels(req.wheels, wheel_dir, req.cache_dir)

    folds = req.folds
    predict_args = (["--tta", req.tta] if req.tta else []) + (["--folds", ",".join(map(str, folds))] if folds else [])
    predict_args += [ALLOW_MISMATCH_FLAG] if mismatch else []  # allowed: the kernel must allow it too
    files = _dataset_files(dataset)
    write_json(stage.manifest, _manifest(cfg, req.names, req.user, shipped, predict_args, wheel_dir, files))
    code_file = f"{req.names.kernel_slug}.py"
    script_runs = [cfg.name] if req.weights else req.runs  # an ensemble: its ensemble.json names the runs
    atomic_write_text(
        stage.kernel / code_file, render_script(_script_settings(cfg, req.names, script_runs, predict_args))
    )
    write_metadata(cfg, req.names, stage, code_file)
    return code_file


def build_kernel(
    cfg: Config,
    runs: list[str] | None = None,
    folds: tuple[int, ...] = (),
    tta: str | None = None,
    wheels: tuple[str, ...] | None = None,
    user: str | None = None,
    cache_dir: Path | None = None,
    allow_postprocess_mismatch: bool = False,
    force: bool = False,
) -> BuildResult:
    """Write ``kernels/<exp>/{dataset,kernel}/`` for ``cfg`` (+ the ``runs`` it ensembles); see module doc.

    ``folds`` () ships every fold found (or ``predict.folds``); ``wheels`` None uses ``kernel.wheels``;
    ``user`` None reads ``KAGGLE_USERNAME`` / ``kaggle.json`` and falls back to a placeholder push replaces.
    A ``postprocess.json`` tuned on another ensemble (runs, folds, TTA) than the shipped one is refused,
    as ``kseg predict`` would refuse it on Kaggle, unless ``allow_postprocess_mismatch`` (passed on to it).
    """
    start = time.time()
    warnings: list[str] = []
    user = _resolve_user(user, warnings)
    members, weights = chosen_members(cfg, runs or [])  # the runs of ensemble.json when kseg ensemble wrote one
    req = _BuildRequest(
        names=kernel_names(cfg, user or PLACEHOLDER_USER),
        user=user,
        runs=list(dict.fromkeys(members)),
        folds=tuple(folds) or tuple(cfg.predict.folds),
        tta=tta,
        wheels=tuple(cfg.kernel.wheels if wheels is None else wheels),
        cache_dir=cache_dir,
        allow_postprocess_mismatch=allow_postprocess_mismatch,
        weights=weights,
    )
    folds_of = {run: [f for f, _ in find_checkpoints(cfg.runs_dir, run, req.folds)] for run in req.runs}
    estimate = estimate_run_time(cfg, folds_of, req.tta or cfg.predict.tta)
    log.info("%s", estimate.describe())
    warnings += check_budget(estimate, force)
    out = cfg.kernel_layout
    stage = out.staging(os.getpid())
    shutil.rmtree(stage.root, ignore_errors=True)
    try:
        code_file = _write_stage(cfg, req, stage, warnings)
        for built, final in ((stage.dataset, out.dataset), (stage.kernel, out.kernel)):
            shutil.rmtree(final, ignore_errors=True)
            os.replace(built, final)
    finally:
        shutil.rmtree(stage.root, ignore_errors=True)

    files = _dataset_files(out.dataset, skip=UPLOAD_SKIPPED)
    total = sum(s for _, s in files)
    if total > DATASET_MAX_BYTES:
        warnings.append(
            f"dataset is {_human(total)}, over Kaggle's {_human(DATASET_MAX_BYTES)} per-dataset limit "
            "(and the private-dataset quota): ship fewer folds or runs"
        )
    for w in warnings:
        log.warning("%s", w)
    return BuildResult(out.root, req.names, files, out.kernel / code_file, warnings, time.time() - start, estimate)
