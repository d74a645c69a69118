"""The official ``kaggle`` CLI (2.x) in a subprocess, and parsers for what it prints.

The CLI exits 0 on many server-side errors (a rejected kernel push, a dataset version the server refused,
invalid data sources): every call here parses stdout for the success line and raises ``KaggleCLIError``
with the CLI's own words otherwise.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = [
    "KaggleCLIError",
    "CLIResult",
    "KaggleCLI",
    "TERMINAL_KERNEL_STATES",
    "parse_kernel_push",
    "parse_dataset_upload",
    "parse_dataset_status",
    "parse_kernel_status",
    "parse_kernel_output",
    "parse_submit",
    "parse_submissions",
]

TERMINAL_KERNEL_STATES = ("complete", "error", "cancel_acknowledged")
_INVALID_SOURCES = re.compile(r"^The following are not valid (\w+ sources|tags)[^:]*: (.*)$", re.M)


class KaggleCLIError(RuntimeError):
    """The kaggle CLI failed or reported a server-side error (even with exit code 0)."""


@dataclass(frozen=True)
class CLIResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        return (self.stdout + "\n" + self.stderr).strip()

    def fail(self, why: str) -> KaggleCLIError:
        tail = "\n".join(self.text.splitlines()[-12:])
        return KaggleCLIError(f"kaggle {' '.join(self.args)}: {why}" + (f"\n{tail}" if tail else ""))


def _find_executable() -> str:
    exe = shutil.which("kaggle") or shutil.which("kaggle", path=str(Path(sys.executable).parent))
    if exe is None:
        raise KaggleCLIError("the kaggle CLI is not installed (pip install kaggle) or not on PATH")
    return exe


class KaggleCLI:
    """Runs ``kaggle <args>``; ``env`` replaces the environment (tests point it at a stub server)."""

    def __init__(self, executable: str | None = None, env: dict[str, str] | None = None, timeout: float = 6 * 3600):
        self.executable = executable
        self.env = env
        self.timeout = timeout

    def __call__(self, *args: str) -> CLIResult:
        cmd = [self.executable or _find_executable(), *args]
        log.info("kaggle %s", " ".join(args))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            raise KaggleCLIError(f"kaggle {' '.join(args)}: no answer in {self.timeout:.0f}s") from e
        except OSError as e:
            raise KaggleCLIError(f"cannot run {cmd[0]}: {e}") from e
        result = CLIResult(tuple(args), proc.returncode, proc.stdout, proc.stderr)
        log.debug("kaggle %s -> %d\n%s", " ".join(args), proc.returncode, result.text)
        return result


def _check_exit(res: CLIResult) -> None:
    if res.returncode != 0:
        raise res.fail(f"exit code {res.returncode}")


def _check_invalid_sources(res: CLIResult) -> None:
    m = _INVALID_SOURCES.search(res.stdout)
    if m:
        raise res.fail(f"Kaggle rejected {m.group(1)} {m.group(2)}")


def parse_kernel_push(res: CLIResult) -> tuple[int | None, str]:
    """(kernel version, url) from ``kaggle kernels push``; raises on any error text."""
    _check_exit(res)
    err = re.search(r"^Kernel push error: (.*)$", res.stdout, re.M)
    if err:
        raise res.fail(f"push rejected: {err.group(1)}")
    _check_invalid_sources(res)
    m = re.search(r"^Kernel version (\d+)? ?successfully pushed\.\s+Please check progress at (\S+)", res.stdout, re.M)
    if not m:
        raise res.fail("no 'Kernel version N successfully pushed' line")
    return (int(m.group(1)) if m.group(1) else None), m.group(2)


def parse_dataset_upload(res: CLIResult) -> str:
    """URL from ``kaggle datasets create`` / ``datasets version``; raises on any error text."""
    _check_exit(res)
    err = re.search(r"^(Dataset (?:version )?creation error: .*)$", res.stdout, re.M)
    if err:
        raise res.fail(err.group(1))
    _check_invalid_sources(res)
    m = re.search(
        r"^(?:Your (?:private|public) Dataset is being created|Dataset version is being created)\. "
        r"Please check progress at (\S+)",
        res.stdout,
        re.M,
    )
    if not m:
        raise res.fail("no 'Dataset ... is being created' line")
    return m.group(1)


def parse_dataset_status(res: CLIResult) -> tuple[str, int | None]:
    """(status, current version or None) from ``kaggle datasets status ID [--format json]``."""
    _check_exit(res)
    for line in reversed(res.stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            version = data.get("current_version_number")
            return str(data.get("status", "")).lower(), (int(version) if version is not None else None)
        if re.fullmatch(r"[a-z_]+", line):
            return line, None
    raise res.fail("no dataset status in the output")


def parse_kernel_status(res: CLIResult) -> tuple[str, str | None]:
    """(status e.g. 'running' / 'complete' / 'error', failure message) from ``kaggle kernels status``."""
    _check_exit(res)
    m = re.search(r'has status "(?:KernelWorkerStatus\.)?([A-Za-z_]+)"', res.stdout)
    if not m:
        raise res.fail("no 'has status' line")
    fail = re.search(r'^Failure message: "(.*)"$', res.stdout, re.M | re.S)
    return m.group(1).lower(), (fail.group(1) if fail else None)


def parse_kernel_output(res: CLIResult) -> list[str]:
    """Local paths the CLI downloaded (output files and the log) with ``kaggle kernels output``."""
    _check_exit(res)
    return re.findall(r"^(?:Output file|Kernel log) downloaded to (.+?)\s*$", res.stdout, re.M)


def parse_submit(res: CLIResult) -> str:
    """The server's message for ``kaggle competitions submit``; raises unless it reports success."""
    text = res.stdout.strip()
    if "Could not submit" in res.text or "Could not find competition" in res.text:
        raise res.fail("submission rejected")  # kaggle >= 2.2 also exits 1 here; older ones exit 0
    _check_exit(res)
    if not re.search(r"successfully submitted", text, re.I):
        raise res.fail("no 'Successfully submitted' message")
    return next(line for line in text.splitlines() if re.search("successfully submitted", line, re.I))


SUBMISSION_COLUMNS = ("ref", "fileName", "date", "description", "status", "publicScore", "privateScore")


def _score(text: str) -> float | None:
    """A leaderboard score cell: '' / 'None' (not scored or not public yet) -> None."""
    text = text.strip()
    if text in ("", "None", "null"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_submissions(res: CLIResult) -> list[dict]:
    """Rows of ``kaggle competitions submissions COMP -v`` (csv with ``SUBMISSION_COLUMNS``), newest first:
    {ref, file, date, description, status ('complete' / 'pending' / 'error'), public_score, private_score}."""
    _check_exit(res)
    lines = res.stdout.splitlines()
    if any(line.strip() == "No submissions found" for line in lines):
        return []
    start = next((i for i, line in enumerate(lines) if line.startswith("ref,fileName,")), None)
    if start is None:
        raise res.fail(f"no submissions csv (header {','.join(SUBMISSION_COLUMNS)})")
    rows = []
    for row in csv.DictReader(lines[start:]):
        missing = [c for c in SUBMISSION_COLUMNS if row.get(c) is None]
        if missing:
            raise res.fail(f"submissions csv row without {missing}: {row}")
        rows.append(
            {
                "ref": row["ref"].strip(),
                "file": row["fileName"],
                "date": row["date"].strip(),
                "description": row["description"],
                "status": row["status"].strip().removeprefix("SubmissionStatus.").lower(),
                "public_score": _score(row["publicScore"]),
                "private_score": _score(row["privateScore"]),
            }
        )
    return rows
