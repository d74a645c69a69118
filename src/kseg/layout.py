"""The one owner of every file and folder name kseg writes: a run, its folds, submissions, a kernel build.

Every stage asks this module instead of spelling a name out; the README's "Training artefacts" block
and its kernel build table document the same layout (``tests/test_layout.py`` checks both)::

    <runs_dir>/<exp>/                     RunLayout(runs_dir, exp).root        (cfg.layout, cfg.run_dir)
      config.yaml                         .config
      postprocess.json                    .postprocess
      tune.csv, tune_<class>.png          .tune_csv, .tune_plot(class_name)
      ensemble.json                       .ensemble      (kseg ensemble: members, weights, scores)
      fold<K>/                            .fold(k)                             (cfg.fold_dir(k))
        best.pt, last.pt, metrics.csv     .best(k), .last(k), .metrics(k)
        swa.pt, epochs/epoch<E>.pt        .swa(k), .epoch_checkpoint(k, e)     (train.swa only)
        oof.npy, oof_ids.csv, oof_aux.npy .oof(k)        -> OofPaths(probs, ids, aux)
        oof_tta-<T>{.npy,_ids.csv,_aux.npy} .oof(k, T)
    <runs_dir>/report.html                report_path(runs_dir)  (kseg report)
    submissions/<exp>-<YYYYmmdd-HHMMSS>.csv   submission_path(exp)  ('/' in the name becomes '-')
    <kernel.dir>/<exp>/                   KernelLayout.of(kernel_dir, exp)     (cfg.kernel_layout)
      dataset/                            .dataset: config.yaml, competition.yaml, kseg-manifest.json,
                                          dataset-metadata.json, wheels/, runs/ (a runs_dir: .run(name))
      kernel/                             .kernel: kernel-metadata.json, <kernel-slug>.py
      rehearsal/                          .rehearsal: rehearsal.log, rehearsal.json, submission.csv
      output/v<N>/                        .output(version): what ``kaggle kernels output`` downloads
      push.json                           .push_record
      .build-<pid>/                       .staging(pid): a KernelLayout built there, then moved in place

On Kaggle (and in a rehearsal) the script reads ``<root>/input/`` and writes ``<root>/working/submission.csv``.
The kernel script template runs before kseg is installed and repeats the few names it needs; the tests
check that they agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

# --- a fold folder: runs/<exp>/fold<K>/
BEST = "best.pt"  # checkpoint of the selected epoch: what predict, --oof and kernels load
LAST = "last.pt"  # full training state after the latest finished epoch (--resume)
METRICS_CSV = "metrics.csv"
SWA_CKPT = "swa.pt"  # train.swa: the averaged weights (best.pt too when they score at least as well)
EPOCHS_DIR = "epochs"  # train.swa: epoch<E>.pt of the epochs that may still be averaged
OOF_FILE = "oof.npy"
OOF_IDS_FILE = "oof_ids.csv"
OOF_AUX_FILE = "oof_aux.npy"
TTA_OOF_PREFIX = "oof_tta-"  # + <TTA>.npy, <TTA>_ids.csv, <TTA>_aux.npy (kseg predict --oof --tta <TTA>)
FOLD_DIR = re.compile(r"^fold(\d+)$")

# --- a run folder: runs/<exp>/
CONFIG = "config.yaml"
POSTPROCESS = "postprocess.json"
TUNE_CSV = "tune.csv"
ENSEMBLE_FILE = "ensemble.json"  # kseg ensemble: the chosen members and weights (predict and kernel build read it)
REPORT_HTML = "report.html"  # kseg report: every experiment under runs_dir, in runs_dir

# --- top-level folders (relative to the working directory) and the data folder
RUNS_DIR = "runs"  # default Config.runs_dir
SUBMISSIONS_DIR = "submissions"
KERNELS_DIR = "kernels"  # default kernel.dir
INPUT_DIR = "input"  # competition data: input/<competition>/ (default data.root), demo miniatures input/<name>-mini/
FOLDS_CSV = "folds.csv"  # written by kseg folds into the data folder

# --- a kernel build: kernels/<exp>/
MANIFEST = "kseg-manifest.json"
DATASET_METADATA = "dataset-metadata.json"
KERNEL_METADATA = "kernel-metadata.json"
COMPETITION_SPEC = "competition.yaml"
WHEELS_DIR = "wheels"
PUSH_RECORD = "push.json"
REHEARSAL_LOG = "rehearsal.log"
REHEARSAL_RECORD = "rehearsal.json"

# --- Kaggle's side: /kaggle/input/<dataset|competition>/, /kaggle/working/submission.csv
KAGGLE_INPUT = "input"
KAGGLE_WORKING = "working"
SUBMISSION_CSV = "submission.csv"
SMOKE_CSV = "smoke_submission.csv"  # training images predicted when the sample submission has no rows


def fold_dir_name(fold: int) -> str:
    """``fold<K>``: the folder name of fold ``fold`` (inverse of ``parse_fold_dir``)."""
    return f"fold{int(fold)}"


def parse_fold_dir(name: str) -> int | None:
    """The fold number of a folder named ``fold<K>``, else None (``"fold3"`` -> 3, ``"fold3.bak"`` -> None)."""
    m = FOLD_DIR.match(name)
    return int(m.group(1)) if m else None


def fold_dirs(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(fold, folder) of every ``fold<K>/`` folder in ``run_dir``, sorted by fold; [] when it does not exist."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(parse_fold_dir(d.name), d) for d in run_dir.iterdir() if d.is_dir()]
    return sorted((k, d) for k, d in found if k is not None)


class OofNames(NamedTuple):
    """File names of one OOF store in a fold folder."""

    probs: str  # uint8 [N, C, H, W]
    ids: str  # csv, column image_id: the N image ids in row order
    aux: str  # uint8 [N, C] aux-head probabilities (model.aux_head only)


class OofPaths(NamedTuple):
    """Paths of one OOF store (``oof_paths``)."""

    probs: Path
    ids: Path
    aux: Path


def oof_files(tta: str = "") -> OofNames:
    """File names of training's OOF store for ``tta=""``, else of the TTA re-prediction of ``kseg predict
    --oof --tta NAME`` (``oof_tta-NAME.npy``, ``oof_tta-NAME_ids.csv``, ``oof_tta-NAME_aux.npy``)."""
    if not tta:
        return OofNames(OOF_FILE, OOF_IDS_FILE, OOF_AUX_FILE)
    stem = f"{TTA_OOF_PREFIX}{tta}"
    return OofNames(f"{stem}.npy", f"{stem}_ids.csv", f"{stem}_aux.npy")


def oof_paths(fold_dir: str | Path, tta: str = "") -> OofPaths:
    """``oof_files(tta)`` inside ``fold_dir``."""
    return OofPaths(*(Path(fold_dir) / name for name in oof_files(tta)))


def flat_name(exp: str) -> str:
    """An experiment name as one file-name component: ``tgs-salt/unet-r34`` -> ``tgs-salt-unet-r34``."""
    return exp.replace("/", "-")


def submission_path(exp: str, now: datetime | None = None) -> Path:
    """``submissions/<flat exp>-<YYYYmmdd-HHMMSS>.csv``: the default submission of experiment ``exp``."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path(SUBMISSIONS_DIR) / f"{flat_name(exp)}-{stamp}.csv"


def report_path(runs_dir: str | Path) -> Path:
    """``<runs_dir>/report.html``: the HTML report of ``kseg report``."""
    return Path(runs_dir) / REPORT_HTML


def _safe_component(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "class"


@dataclass(frozen=True)
class RunLayout:
    """The artefacts of experiment ``exp`` under ``runs_dir`` (``runs/<exp>/``); pure paths, no I/O."""

    runs_dir: Path
    exp: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs_dir", Path(self.runs_dir))

    @property
    def root(self) -> Path:
        """``<runs_dir>/<exp>/``."""
        return self.runs_dir / self.exp

    @property
    def config(self) -> Path:
        """``config.yaml``: the resolved config every stage that writes artefacts saves."""
        return self.root / CONFIG

    @property
    def postprocess(self) -> Path:
        """``postprocess.json``: the tuned per-class post-processing (``kseg tune``)."""
        return self.root / POSTPROCESS

    @property
    def tune_csv(self) -> Path:
        """``tune.csv``: every tuning-grid cell's scores."""
        return self.root / TUNE_CSV

    @property
    def ensemble(self) -> Path:
        """``ensemble.json``: the members and weights ``kseg ensemble`` chose (read by predict and kernel build)."""
        return self.root / ENSEMBLE_FILE

    def tune_plot(self, class_name: str) -> Path:
        """``tune_<class>.png`` (characters other than letters, digits, ``_.-`` become ``_``)."""
        return self.root / f"tune_{_safe_component(class_name)}.png"

    def fold(self, fold: int) -> Path:
        """``fold<K>/``."""
        return self.root / fold_dir_name(fold)

    def checkpoint(self, fold: int, name: str = BEST) -> Path:
        """``fold<K>/<name>`` (``best.pt`` | ``last.pt``, or what ``--weights`` names)."""
        return self.fold(fold) / name

    def best(self, fold: int) -> Path:
        """``fold<K>/best.pt``."""
        return self.fold(fold) / BEST

    def last(self, fold: int) -> Path:
        """``fold<K>/last.pt``."""
        return self.fold(fold) / LAST

    def metrics(self, fold: int) -> Path:
        """``fold<K>/metrics.csv``."""
        return self.fold(fold) / METRICS_CSV

    def swa(self, fold: int) -> Path:
        """``fold<K>/swa.pt``: the averaged checkpoint of ``train.swa``."""
        return self.fold(fold) / SWA_CKPT

    def epochs_dir(self, fold: int) -> Path:
        """``fold<K>/epochs/``: the epoch checkpoints ``train.swa`` may average."""
        return self.fold(fold) / EPOCHS_DIR

    def epoch_checkpoint(self, fold: int, epoch: int) -> Path:
        """``fold<K>/epochs/epoch<E>.pt`` (1-based epoch, zero-padded to 3 digits)."""
        return self.epochs_dir(fold) / f"epoch{int(epoch):03d}.pt"

    def oof(self, fold: int, tta: str = "") -> OofPaths:
        """Training's OOF store of fold ``fold`` (``tta=""``) or its ``--oof --tta`` re-prediction."""
        return oof_paths(self.fold(fold), tta)

    def folds(self) -> list[tuple[int, Path]]:
        """(fold, folder) of the ``fold<K>/`` folders on disk, sorted by fold."""
        return fold_dirs(self.root)


@dataclass(frozen=True)
class KernelLayout:
    """A kernel build folder (``kernels/<exp>/``, or a staging folder that is moved there); pure paths."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, kernels_dir: str | Path, exp: str) -> KernelLayout:
        """``<kernels_dir>/<exp>/``."""
        return cls(Path(kernels_dir) / exp)

    def staging(self, pid: int) -> KernelLayout:
        """``.build-<pid>/`` inside the build folder: a build is written there, then its parts moved in place."""
        return KernelLayout(self.root / f".build-{pid}")

    @property
    def dataset(self) -> Path:
        """``dataset/``: the Kaggle dataset (checkpoints, configs, wheels, manifest)."""
        return self.root / "dataset"

    @property
    def kernel(self) -> Path:
        """``kernel/``: the Kaggle kernel (metadata + script)."""
        return self.root / "kernel"

    @property
    def manifest(self) -> Path:
        return self.dataset / MANIFEST

    @property
    def dataset_metadata(self) -> Path:
        return self.dataset / DATASET_METADATA

    @property
    def kernel_metadata(self) -> Path:
        return self.kernel / KERNEL_METADATA

    @property
    def config(self) -> Path:
        """``dataset/config.yaml``: the resolved experiment config the script predicts with."""
        return self.dataset / CONFIG

    @property
    def competition(self) -> Path:
        return self.dataset / COMPETITION_SPEC

    @property
    def wheels(self) -> Path:
        return self.dataset / WHEELS_DIR

    @property
    def runs(self) -> Path:
        """``dataset/runs/``: a runs_dir holding the shipped runs (``run(name)``)."""
        return self.dataset / RUNS_DIR

    def run(self, exp: str) -> RunLayout:
        """The shipped run ``exp``: ``dataset/runs/<exp>/`` laid out like ``runs/<exp>/``."""
        return RunLayout(self.runs, exp)

    @property
    def rehearsal(self) -> Path:
        """``rehearsal/``: log, submission and record of the last ``kseg kernel rehearse``."""
        return self.root / "rehearsal"

    @property
    def rehearsal_log(self) -> Path:
        return self.rehearsal / REHEARSAL_LOG

    @property
    def rehearsal_record(self) -> Path:
        return self.rehearsal / REHEARSAL_RECORD

    @property
    def rehearsal_submission(self) -> Path:
        return self.rehearsal / SUBMISSION_CSV

    @property
    def rehearsal_smoke(self) -> Path:
        """The kernel's smoke test output (kseg.kernel.smoke), when its sample submission had no rows."""
        return self.rehearsal / SMOKE_CSV

    def output(self, version: int | str | None) -> Path:
        """``output/v<N>/`` (``vlatest`` when the version is unknown): the downloaded kernel output."""
        return self.root / "output" / f"v{version or 'latest'}"

    @property
    def push_record(self) -> Path:
        """``push.json``: versions, status and submissions of every push (kept across rebuilds)."""
        return self.root / PUSH_RECORD
