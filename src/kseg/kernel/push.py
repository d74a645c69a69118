"""``kseg kernel push | status | submit``: upload the built kernel with the official kaggle CLI and follow it.

push: ``kaggle datasets create -p dataset --dir-mode zip`` the first time (``datasets version -m MSG
--dir-mode zip`` afterwards: checkpoints live in subfolders, which the CLI silently skips without
``--dir-mode``), wait until the dataset version is ready, ``kaggle kernels push -p kernel``, then poll
``kaggle kernels status`` with backoff until complete or error and fetch the log with ``kaggle kernels
output``. Everything is recorded in ``kernels/<exp>/push.json`` (kernel and dataset versions, git commit,
the training runs' wandb ids) and, with wandb on, in a wandb run of ``job_type=kernel`` in the
experiment's group.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

from kseg import __version__
from kseg.config import Config, config_to_dict
from kseg.kernel.build import git_state
from kseg.kernel.kaggle_cli import (
    TERMINAL_KERNEL_STATES,
    KaggleCLI,
    parse_dataset_upload,
    parse_kernel_output,
    parse_kernel_push,
    parse_kernel_status,
    parse_submit,
)
from kseg.kernel.metadata import competition_slug, read_json, write_json, write_metadata
from kseg.kernel.polling import Backoff, Sleep, poll_kernel, wait_dataset
from kseg.kernel.slugs import KernelNames, kaggle_username, kernel_names
from kseg.layout import SUBMISSION_CSV, RunLayout, flat_name, fold_dir_name

log = logging.getLogger(__name__)

__all__ = ["Backoff", "load_record", "push", "refresh_status", "submit", "training_wandb_ids"]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def load_record(cfg: Config) -> dict[str, Any]:
    """``kernels/<exp>/push.json`` ({} before the first push)."""
    path = cfg.kernel_layout.push_record
    return read_json(path) if path.is_file() else {}


def _save_record(cfg: Config, record: dict[str, Any]) -> None:
    write_json(cfg.kernel_layout.push_record, record)


def training_wandb_ids(cfg: Config, runs: dict[str, list[int]]) -> dict[str, str]:
    """``{"<run>/fold<K>": wandb run id}`` read from each fold's ``last.pt`` (folds without one are skipped)."""
    import torch

    ids = {}
    for run, folds in runs.items():
        for fold in folds:
            path = RunLayout(Path(cfg.runs_dir), run).last(fold)
            if not path.is_file():
                continue
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                wid = (ckpt.get("progress") or {}).get("wandb_id")
            except Exception as e:  # noqa: BLE001 - lineage is best effort
                log.warning("cannot read the wandb id of %s: %s", path, e)
                continue
            if wid:
                ids[f"{run}/{fold_dir_name(fold)}"] = str(wid)
    return ids


def _fetch_output(cfg: Config, cli: KaggleCLI, kernel: dict[str, Any]) -> None:
    """``kaggle kernels output`` into ``kernels/<exp>/output/v<N>/``; records the files and checks the csv."""
    folder = cfg.kernel_layout.output(kernel.get("version"))
    folder.mkdir(parents=True, exist_ok=True)
    files = parse_kernel_output(cli("kernels", "output", kernel["id"], "-p", str(folder), "-o"))
    kernel["output_dir"] = str(folder)
    kernel["output_files"] = files
    logs = [f for f in files if f.endswith(".log")]
    kernel["log"] = logs[0] if logs else None
    csv = folder / SUBMISSION_CSV
    if csv.is_file() and cfg.data_root.is_dir():
        from kseg.submission.validate import validate_submission

        report = validate_submission(csv, cfg)
        kernel["submission_problems"] = report.problems[:20]
        if not report.ok:
            log.warning("kernel output %s does not validate against the local data: %s", csv, report.problems[:3])


def _follow(cfg: Config, cli: KaggleCLI, record: dict[str, Any], backoff: Backoff, sleep: Sleep, fetch: bool) -> None:
    kernel = record["kernel"]

    def on_status(status: str, message: str | None) -> None:
        kernel.update(status=status, failure_message=message, checked_at=_now())
        _save_record(cfg, record)

    poll_kernel(cli, kernel["id"], backoff, sleep, on_status)
    if fetch and kernel.get("status") in TERMINAL_KERNEL_STATES:
        _fetch_output(cfg, cli, kernel)
    _save_record(cfg, record)


def _check_build(cfg: Config) -> tuple[dict[str, Any], KernelNames]:
    """The built kernel's manifest and its Kaggle names for the real user (metadata rewritten with them)."""
    build = cfg.kernel_layout
    if not build.kernel_metadata.is_file() or not build.manifest.is_file():
        raise FileNotFoundError(f"no built kernel in {build.root}: run `kseg kernel build -c <config>` first")
    manifest = read_json(build.manifest)
    if manifest.get("experiment") != cfg.name:
        raise ValueError(f"{build.dataset}: built for experiment {manifest.get('experiment')!r}, not {cfg.name!r}")
    user = kaggle_username()
    if not user:
        raise ValueError("no Kaggle username: set KAGGLE_USERNAME/KAGGLE_KEY or put kaggle.json in KAGGLE_CONFIG_DIR")
    names = kernel_names(cfg, user)
    write_metadata(cfg, names, build, read_json(build.kernel_metadata)["code_file"])
    return manifest, names


def _new_record(cfg: Config, names: KernelNames, manifest: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(a new push record, the previous one less its submissions and history, which the new one carries over)."""
    previous = load_record(cfg)
    commit, dirty = git_state()
    record: dict[str, Any] = {
        "experiment": cfg.name,
        "pushed_at": _now(),
        "git_commit": commit,
        "git_dirty": dirty,
        "kseg_version": __version__,
        "build": {
            "built_at": manifest.get("built_at"),
            "git_commit": manifest.get("git_commit"),
            "runs": manifest.get("runs"),
            "wheels": manifest.get("wheels"),
        },
        "dataset": {"id": names.dataset_id},
        "kernel": {"id": names.kernel_id},
        "wandb": {"training_runs": training_wandb_ids(cfg, manifest.get("runs") or {})},
        "submissions": previous.pop("submissions", []),
        "history": previous.pop("history", []) + ([previous] if previous else []),
    }
    return record, previous


def _upload_dataset(cfg: Config, cli: KaggleCLI, dataset: dict[str, Any], previous: dict[str, Any], notes: str) -> None:
    """``kaggle datasets create`` (first push) or ``datasets version``; sets the record's ``dataset`` url and action."""
    dataset_dir = str(cfg.kernel_layout.dataset)
    action = "version" if previous.get("dataset", {}).get("id") == dataset["id"] else "create"
    if action == "create":
        res = cli("datasets", "create", "-p", dataset_dir, "--dir-mode", "zip")
        if res.returncode == 0 and "already in use" in res.stdout:
            action = "version"  # created earlier (another machine, or push.json removed)
        else:
            dataset["url"] = parse_dataset_upload(res)
    if action == "version":
        res = cli("datasets", "version", "-p", dataset_dir, "-m", notes, "--dir-mode", "zip")
        dataset["url"] = parse_dataset_upload(res)
    dataset["action"] = action


def push(
    cfg: Config,
    message: str = "",
    cli: KaggleCLI | None = None,
    wait: bool = True,
    backoff: Backoff = Backoff(),
    fetch: bool = True,
    sleep: Sleep = time.sleep,
) -> dict[str, Any]:
    """Upload ``kernels/<exp>/`` (dataset, then kernel) and, with ``wait``, follow the run; returns the record."""
    cli = cli or KaggleCLI()
    manifest, names = _check_build(cfg)
    record, previous = _new_record(cfg, names, manifest)
    commit, dirty = record["git_commit"], record["git_dirty"]
    notes = message or f"kseg {cfg.name} @ {(commit or 'no-git')[:10]}{' (dirty)' if dirty else ''}"

    _upload_dataset(cfg, cli, record["dataset"], previous, notes)
    status, version = wait_dataset(cli, names.dataset_id, backoff, sleep)
    record["dataset"].update(status=status, version=version)
    _save_record(cfg, record)

    kversion, url = parse_kernel_push(cli("kernels", "push", "-p", str(cfg.kernel_layout.kernel)))
    record["kernel"].update(version=kversion, url=url, status="queued", failure_message=None)
    _save_record(cfg, record)
    log.info("pushed kernel %s version %s (%s)", names.kernel_id, kversion, url)
    if wait:
        _follow(cfg, cli, record, backoff, sleep, fetch)
    record["wandb"]["kernel_run"] = log_wandb(cfg, record)
    _save_record(cfg, record)
    return record


def refresh_status(
    cfg: Config,
    cli: KaggleCLI | None = None,
    wait: bool = False,
    backoff: Backoff = Backoff(),
    fetch: bool = True,
    sleep: Sleep = time.sleep,
) -> dict[str, Any]:
    """Query (or with ``wait`` follow) the last pushed kernel; fetches its output once it ended."""
    cli = cli or KaggleCLI()
    record = load_record(cfg)
    if not record.get("kernel", {}).get("id"):
        raise FileNotFoundError(f"{cfg.kernel_layout.push_record}: nothing pushed yet (`kseg kernel push` first)")
    kernel = record["kernel"]
    if wait:
        _follow(cfg, cli, record, backoff, sleep, fetch)
    else:
        status, message = parse_kernel_status(cli("kernels", "status", kernel["id"]))
        kernel.update(status=status, failure_message=message, checked_at=_now())
        if fetch and status in TERMINAL_KERNEL_STATES and not kernel.get("output_files"):
            _fetch_output(cfg, cli, kernel)
        _save_record(cfg, record)
    if kernel.get("status") in TERMINAL_KERNEL_STATES:
        record["wandb"]["kernel_run"] = log_wandb(cfg, record)
        _save_record(cfg, record)
    return record


def submit(cfg: Config, message: str, file: str | None = None, cli: KaggleCLI | None = None) -> str:
    """``kaggle competitions submit``: a csv (``file``) for file competitions, else the pushed kernel version
    (code competitions). Returns the server's message; raises unless it reports success."""
    cli = cli or KaggleCLI()
    record = load_record(cfg)
    comp = competition_slug(cfg)
    if file:
        if not Path(file).is_file():
            raise FileNotFoundError(f"submission file not found: {file}")
        args = ["competitions", "submit", comp, "-f", str(file), "-m", message]
    else:
        kernel = record.get("kernel", {})
        if not kernel.get("version"):
            raise ValueError("no pushed kernel version in push.json: push first, or pass --file for a csv")
        if kernel.get("status") != "complete":
            raise ValueError(f"kernel {kernel['id']} v{kernel['version']} is {kernel.get('status')!r}, not complete")
        args = [
            "competitions",
            "submit",
            comp,
            "-k",
            kernel["id"],
            "-v",
            str(kernel["version"]),
            "-f",
            SUBMISSION_CSV,
            "-m",
            message,
        ]
    answer = parse_submit(cli(*args))
    record.setdefault("submissions", []).append(
        {
            "at": _now(),
            "file": file,
            "kernel_version": None if file else record["kernel"]["version"],
            "message": message,
            "server": answer,
        }
    )
    _save_record(cfg, record)
    return answer


def log_wandb(cfg: Config, record: dict[str, Any]) -> str | None:
    """A wandb run (``job_type=kernel``, the experiment's group) holding the push record and, once fetched,
    the kernel's submission as an artifact; resumed on later status checks. Never fatal; None when off."""
    if cfg.wandb.mode == "disabled":
        return None
    try:
        import wandb

        kernel = record["kernel"]
        run = wandb.init(
            mode=cfg.wandb.mode,
            project=cfg.wandb.project,
            entity=cfg.wandb.entity or None,
            group=cfg.name,
            job_type="kernel",
            name=f"{cfg.name}/kernel-v{kernel.get('version')}",
            id=record["wandb"].get("kernel_run"),
            resume="allow",
            dir=str(cfg.kernel_layout.root),
            tags=list(cfg.wandb.tags),
            config={
                "experiment": config_to_dict(cfg),
                "dataset": record["dataset"],
                "kernel_id": kernel["id"],
                "git_commit": record["git_commit"],
                "training_runs": record["wandb"]["training_runs"],
            },
            settings=wandb.Settings(console="off", silent=True),
        )
        run.summary.update(
            {
                "kernel_version": kernel.get("version"),
                "kernel_status": kernel.get("status"),
                "dataset_version": record["dataset"].get("version"),
            }
        )
        csv = Path(kernel.get("output_dir") or "/nonexistent") / SUBMISSION_CSV
        if csv.is_file():
            meta = {"kernel": kernel["id"], "kernel_version": kernel.get("version")}
            art = wandb.Artifact(f"submission-{flat_name(cfg.name)}", type="submission", metadata=meta)
            art.add_file(str(csv))
            run.log_artifact(art)
        run_id = run.id
        run.finish()
        return run_id
    except Exception as e:  # noqa: BLE001 - tracking must never fail a push
        log.warning("wandb logging of the kernel failed (%s: %s)", type(e).__name__, e)
        return record.get("wandb", {}).get("kernel_run")
