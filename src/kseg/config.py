"""Experiment configs: YAML (defaults chain + experiment + ``key=value`` overrides) -> frozen dataclasses.

``load_config(path, overrides)`` is the only entry point stages use. The resolved config embeds the
competition spec, so a saved ``config.yaml`` (or a checkpoint) is enough to rebuild everything.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from kseg.atomic import atomic_write_text
from kseg.competition import CompetitionSpec
from kseg.config_yaml import configs_root, load_raw, parse_override, read_yaml, resolve_competition
from kseg.layout import FOLDS_CSV, INPUT_DIR, KERNELS_DIR, RUNS_DIR, KernelLayout, RunLayout
from kseg.tiling import TileConfig
from kseg.typed import ConfigError, bounded, choice, convert_key, dict_prefix, from_dict, out_of_range, to_dict

log = logging.getLogger(__name__)

# Name fields (``choice``) are checked against the registry that builds them, imported on the first check.


@dataclass(frozen=True)
class AugmentStep:
    """One albumentations transform: ``{name: HorizontalFlip, params: {p: 0.5}}``."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataConfig:
    root: str = ""  # '' -> input/<competition.name>
    folds_csv: str = ""  # '' -> <root>/folds.csv (set it when the data folder is read-only)
    image_size: tuple[int, int] = bounded((256, 256), ge=1, valid="two sizes >= 1")  # (H, W) the model sees
    resize: Literal["resize", "pad"] = "resize"  # pad: reflect-pad up to image_size (TGS 101 -> 128)
    batch_size: int = bounded(8, ge=1)
    val_batch_size: int = bounded(0, ge=0, note="(0 = 2 x batch_size)")
    num_workers: int = bounded(2, ge=0)
    n_folds: int = bounded(5, ge=2)
    fold_seed: int = 42
    normalize: Literal["imagenet", "max", "unit"] = (
        "imagenet"  # max: / the input's maximum (MRI); applied on the device
    )
    # uint8: decode, augment and collate in the file's integer type (uint16 for 16-bit files); float: float32
    # in [0, 1] from decoding on (the former path, for augmentations that need float input)
    pixels: Literal["uint8", "float"] = "uint8"
    # JPEGs at least 4x the model input per side (with resize): decode at 1/2, 1/4 or 1/8 size in libjpeg, then
    # area-resize (Carvana 1918x1280 -> 128: 5.6x cheaper; pixels within a few grey levels). Train and predict alike
    jpeg_draft: bool = False
    augment: tuple[AugmentStep, ...] = ()
    on_bad_image: Literal["error", "skip"] = "error"
    pseudo_labels: str = ""  # train-format csv of pseudo-labelled test images (train folds only)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = choice("kseg.models:ARCHS", "Unet")  # an smp architecture, any case
    encoder: str = "resnet34"
    encoder_weights: str | None = "imagenet"  # imagenet | none | path to a local weights file
    aux_head: bool = False  # image-level "mask is not empty" logit per class
    freeze_encoder_epochs: int = 0
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra smp.create_model arguments

    def __post_init__(self) -> None:
        if isinstance(self.encoder_weights, str) and self.encoder_weights.lower() in ("none", "null", ""):
            object.__setattr__(self, "encoder_weights", None)


@dataclass(frozen=True)
class LossTerm:
    name: str = choice("kseg.losses:LOSSES")
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    name: str = choice("kseg.optim:OPTIMIZERS", "adamw")
    lr: float = bounded(3e-4, gt=0)
    weight_decay: float = bounded(1e-4, ge=0)
    no_decay_norm_bias: bool = True  # biases and norm weights (every 1-D parameter) get weight decay 0 (timm)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SchedConfig:
    name: str = choice("kseg.optim:SCHEDULERS", "cosine")
    warmup_epochs: float = 0.0  # in [0, train.epochs]: checked by Config
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = bounded(10, ge=1)
    seed: int = 42
    accumulate: int = bounded(1, ge=1)
    clip_grad: float = bounded(0.0, ge=0, note="(0 = off)")  # max grad norm
    amp: bool = True  # CUDA only
    # AMP dtype: auto = bfloat16 where the GPU supports it (no GradScaler), else float16 + GradScaler
    amp_dtype: Literal["auto", "bfloat16", "float16"] = "auto"
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile the model's forward (opt-in: the first steps pay the compilation)
    ema: bool = False
    ema_decay: float = bounded(0.999, gt=0, lt=1)
    patience: int = bounded(0, ge=0, note="(0 = off)")  # early stopping on val metric
    skip_nonfinite: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:1
    val_threshold: float = bounded(0.5, ge=0, le=1)
    aux_weight: float = 0.2
    log_images: int = 4
    deterministic: bool = True
    init_from: str = ""  # start from these weights, e.g. {runs_dir}/exp/fold{fold}/best.pt (multi-stage training)
    # which epoch best.pt + oof.npy hold: best = highest val metric (chosen on the held fold itself, so the
    # CV estimate is optimistic); last = the last epoch (no selection on the held fold; needs patience 0)
    select: Literal["best", "last"] = "best"
    # after the last epoch, average the top-k (val metric) or last-k epochs' weights, BN recomputed (kseg.train.swa)
    swa: Literal["off", "top", "last"] = "off"
    swa_k: int = bounded(3, ge=2)

    def __post_init__(self) -> None:
        if self.select == "last" and self.swa == "top":
            raise ConfigError(
                "train.select=last with train.swa=top: top-k chooses epochs by the held fold's metric, which "
                "select=last is meant to avoid; use train.swa=last"
            )
        if self.select == "last" and self.patience:
            raise ConfigError(
                f"train.select=last with train.patience={self.patience}: early stopping picks the "
                "stopping epoch on the held fold, which select=last is meant to avoid; set "
                "train.patience=0 (or train.select=best)"
            )


@dataclass(frozen=True)
class TuneConfig:
    thresholds: tuple[float, ...] = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
    min_sizes: tuple[int, ...] = (0, 16, 64, 256, 1024)  # pixels at submission size
    min_areas: tuple[int, ...] = (0,)  # empty the mask when fewer pixels survive
    max_prob_gates: tuple[float, ...] = (0.0,)  # empty the mask when max probability is below
    triplet: bool = False
    chunk_size: int = 64  # OOF images per chunk
    top_thresholds: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9)  # triplet rule: mask kept if pixels exceed it
    aux_gates: tuple[float, ...] = (0.0,)  # empty when aux-head prob is below (needs fold*/oof_aux.npy)
    oof_tta: str = choice(
        "kseg.tta:TTA_MODES", "", also=("",)
    )  # "" = training's OOF; else the TTA OOF written by `kseg predict --oof --tta NAME`


@dataclass(frozen=True)
class PredictConfig:
    tta: str = choice("kseg.tta:TTA_MODES", "none")
    batch_size: int = 16
    folds: tuple[int, ...] = ()  # () = every fold found
    amp: bool = True  # CUDA only; dtype as train.amp_dtype
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile each checkpoint's forward (opt-in)
    # torch threads of a CPU predict; 0 = auto: the cores the loader workers leave free, at least 1
    cpu_threads: int = bounded(0, ge=0)
    pseudo_confidence: float = bounded(0.9, ge=0.5, lt=1)
    pseudo_min_fraction: float = bounded(0.99, ge=0, le=1)


@dataclass(frozen=True)
class WandbConfig:
    mode: Literal["online", "offline", "disabled"] = "offline"
    project: str = "kseg"
    entity: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class KernelConfig:
    slug: str = ""  # dataset slug; '' -> kseg-<experiment>
    title: str = ""  # kernel title; '' -> the kernel slug
    wheels: tuple[str, ...] = ("segmentation-models-pytorch", "timm", "albumentations", "iterative-stratification")
    dir: str = KERNELS_DIR  # build outputs: <dir>/<experiment>/{dataset,kernel}/
    kernel_slug: str = ""  # '' -> slug of title when set, else <slug>-infer
    dataset_title: str = ""  # '' -> the dataset slug
    license: str = "CC0-1.0"  # dataset license name
    enable_gpu: bool = True
    # run-time budget (kseg.kernel.budget): build refuses an ensemble estimated over the limit unless --force
    time_limit_hours: float = bounded(9.0, gt=0)  # the competition's kernel run-time limit
    test_images: int = bounded(0, ge=0, note="(0 = the local test set's size)")  # hidden test set size
    gpu_speedup: float = bounded(10.0, gt=0)  # CPU / GPU seconds per forward; assumed until measured on a GPU
    startup_minutes: float = bounded(2.0, ge=0)  # offline wheel install + checkpoint loading
    # an empty sample submission (Kaggle fills it only when it scores the kernel): predict this many training
    # images instead, so the commit run exercises the model (kseg.kernel.smoke); 0 = off
    smoke_images: int = bounded(32, ge=0)


@dataclass(frozen=True)
class Config:
    """A resolved experiment."""

    competition: CompetitionSpec
    name: str = ""
    runs_dir: str = RUNS_DIR
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: tuple[LossTerm, ...] = (LossTerm("bce", 0.5), LossTerm("dice", 0.5))
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    kernel: KernelConfig = field(default_factory=KernelConfig)
    tile: TileConfig = field(default_factory=TileConfig)  # images larger than memory (kseg.tiling)

    def __post_init__(self) -> None:
        warmup, epochs = self.sched.warmup_epochs, self.train.epochs
        if not 0 <= warmup <= epochs:
            raise out_of_range("sched.warmup_epochs", warmup, f"in [0, train.epochs={epochs}]")
        if self.tile.enabled and self.competition.scorer.kind == "volume":  # tiles of 2D slides have no 3D case
            raise ConfigError(
                f"tile.size: {self.tile.size} tiles 2D slides, but competition.metric {self.competition.metric} "
                "scores 3D volumes of slices; use tile.size: 0 or an item / pooled metric"
            )

    @property
    def layout(self) -> RunLayout:
        """Where this experiment's artefacts live (``runs/<experiment>/``; see ``kseg.layout``)."""
        return RunLayout(Path(self.runs_dir), self.name)

    @property
    def kernel_layout(self) -> KernelLayout:
        """Where ``kseg kernel build`` writes this experiment's kernel (``kernels/<experiment>/``)."""
        return KernelLayout.of(self.kernel.dir, self.name)

    @property
    def run_dir(self) -> Path:
        """``runs/<experiment>/``."""
        return self.layout.root

    @property
    def data_root(self) -> Path:
        return Path(self.data.root or os.path.join(INPUT_DIR, self.competition.name))

    @property
    def folds_path(self) -> Path:
        """``data.folds_csv``, else ``<data.root>/folds.csv``; for a read-only data folder without one
        (shared or mounted data), ``input/<competition>/folds.csv``."""
        if self.data.folds_csv:
            return Path(self.data.folds_csv)
        path = self.data_root / FOLDS_CSV
        if path.exists() or not self.data_root.is_dir() or _writable(self.data_root):
            return path
        return Path(INPUT_DIR) / self.competition.name / FOLDS_CSV

    def fold_dir(self, fold: int) -> Path:
        """``runs/<experiment>/fold<K>/``."""
        return self.layout.fold(fold)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def _writable(folder: Path) -> bool:
    """Writable by us and not marked read-only (root ignores permissions, so check the mode bits too)."""
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Set dotted keys, checking each against ``Config``'s fields before any work."""
    raw = dict(raw)
    for text in overrides:
        key, value = parse_override(text)
        if dict_prefix(Config, key) is None:  # a key inside a dict field (model.kwargs.x) is checked with the config
            convert_key(Config, key, value)  # unknown keys, types and values fail early, naming the dotted key
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            child = node.get(p)
            child = dict(child) if isinstance(child, dict) else {}
            node[p] = child
            node = child
        node[parts[-1]] = value
    return raw


def experiment_name(path: Path) -> str:
    """``configs/tgs-salt/unet-r34.yaml`` -> ``tgs-salt/unet-r34``."""
    root = configs_root(path)
    rel = path.resolve().relative_to(root) if root else Path(path.name)
    return str(rel.with_suffix("")).replace(os.sep, "/")


def config_from_dict(data: dict) -> Config:
    """Typed config from a fully resolved dict (``config.yaml`` or a checkpoint)."""
    return from_dict(Config, data)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load an experiment: defaults chain, experiment file, competition spec, then overrides."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    raw = load_raw(path)
    raw = resolve_competition(raw, configs_root(path), path.parent)
    raw = apply_overrides(raw, overrides)
    raw.setdefault("name", experiment_name(path))
    if not raw["name"]:
        raw["name"] = experiment_name(path)
    return config_from_dict(raw)


def config_to_dict(cfg: Config) -> dict:
    return to_dict(cfg)


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | Path | None = None) -> Path:
    """Write the resolved config (default ``runs/<exp>/config.yaml``); returns the path."""
    path = Path(path) if path else cfg.layout.config
    atomic_write_text(path, dump_config(cfg))
    return path


def read_saved_config(path: str | Path) -> Config:
    """Read a resolved ``config.yaml`` written by ``save_config``."""
    return config_from_dict(read_yaml(Path(path)))
