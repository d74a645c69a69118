"""Train one fold end to end: ``train_fold(cfg, fold, resume)`` writes the artefacts of ``runs/<exp>/fold<K>/``.

Per epoch: train, validate (loss at model size; competition metric and OOF at submission size), then in
this order ``best.pt`` + ``oof.npy`` (when the metric improved; every epoch with ``train.select=last``),
``metrics.csv``, ``last.pt``. Only rank 0 writes; metrics are reduced over ranks so every rank takes the
same early-stopping decisions. ``best.pt`` is the checkpoint predict, ``--oof`` and kernels load: the
selected epoch's weights, EMA ones with ``train.ema`` (the weights that were validated).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kseg.config import Config, save_config
from kseg.data.dataset import read_labels
from kseg.data.folds import fold_split
from kseg.data.geometry import oof_size
from kseg.layout import (
    BEST,
    LAST,
    METRICS_CSV,
    OOF_AUX_FILE,
    OOF_FILE,
    OOF_IDS_FILE,
    RUNS_DIR,
    SWA_CKPT,
    TTA_OOF_PREFIX,
    fold_dir_name,
)
from kseg.losses import build_loss
from kseg.models import build_model, save_checkpoint, validated_state_dict
from kseg.train import dist as D
from kseg.train.data import FoldData, build_fold_data
from kseg.train.loop import ValOutput, train_epoch, validate
from kseg.train.loop import reduce_val as _reduce_val  # module-level name: tests patch fit._reduce_val
from kseg.train.oof_store import OofWriter, merge_parts, write_aux, write_ids
from kseg.train.preflight import remove_stale_temps
from kseg.train.runtime import Runtime, maybe_compile
from kseg.train.seed import configure_determinism, seed_everything
from kseg.train.state import Progress, write_metrics_csv
from kseg.train.swa import average_fold, keep_epoch, prune_epochs
from kseg.train.tracking import Tracker, start_tracker
from kseg.train.trainer import Trainer
from kseg.train.truth import TruthTable

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, Progress], None]


@dataclass(frozen=True)
class FoldResult:
    """``best_*``: the epoch with the highest val metric; ``selected_*``: the one in best.pt / oof.npy."""

    fold: int
    best_score: float
    best_epoch: int
    epochs: int
    seconds: float
    fold_dir: Path
    select: str = "best"
    selected_score: float = math.nan
    selected_epoch: int = -1
    swa_score: float = math.nan  # train.swa: the averaged weights' val metric
    swa_kept: bool = False  # whether they replaced best.pt + oof.npy


def oof_shape(cfg: Config, data: FoldData) -> tuple[int, int, int, int]:
    """(N val images of this rank, C, H, W) at the OOF size (``oof_size``: from the spec or the first image)."""
    native = cfg.competition.image_size
    if native is None and cfg.competition.submission_size is None:
        native = tuple(int(v) for v in data.val_ds[0]["size"].tolist())
    h, w = oof_size(cfg, native or (0, 0))
    return len(data.val_index), cfg.competition.num_classes, h, w


def train_fold(
    cfg: Config,
    fold: int,
    resume: bool = False,
    on_epoch_end: EpochCallback | None = None,
    info: D.DistInfo | None = None,
) -> FoldResult:
    """Train ``fold`` (resuming from ``last.pt`` when asked); returns the best score and epoch.

    ``on_epoch_end(epoch, progress)`` runs after each epoch's artefacts are written (tests use it to
    simulate a kill). Under torchrun pass nothing: the process group is joined from the environment.
    """
    info = info or D.init_distributed(cfg.train.device)
    configure_determinism(cfg.train.deterministic)
    seed_everything(cfg.train.seed)
    run = FoldRun.start(cfg, fold, resume, info)
    start = time.time()
    try:
        while run.progress.epoch < cfg.train.epochs and not run.progress.stopped_early:
            run.run_epoch()
            if on_epoch_end is not None:
                on_epoch_end(run.progress.epoch, run.progress)
        if cfg.train.swa != "off":
            average_fold(run)
        run.finish()
    finally:
        run.tracker.finish()
    p, select = run.progress, cfg.train.select
    seconds, swa = time.time() - start, p.swa or {}
    selected = (swa["score"], p.epoch) if swa.get("kept") else p.selected(select)
    swa_result = (swa.get("score", math.nan), bool(swa.get("kept")))
    return FoldResult(fold, p.best_score, p.best_epoch, p.epoch, seconds, run.fold_dir, select, *selected, *swa_result)


@dataclass
class FoldRun:
    """One fold being trained: its data, ground truth, ``Trainer`` and tracker; only rank 0 writes."""

    cfg: Config
    fold: int
    data: FoldData
    truth: TruthTable
    shape: tuple[int, int, int, int]  # this rank's OOF rows (oof_shape)
    trainer: Trainer
    info: D.DistInfo
    tracker: Tracker = field(default_factory=Tracker)

    @classmethod
    def start(cls, cfg: Config, fold: int, resume: bool, info: D.DistInfo) -> FoldRun:
        """Data, model and trainer of ``fold`` (state from ``last.pt`` with ``resume``), its folder prepared."""
        rt = Runtime.from_config(cfg, info)
        labels = read_labels(cfg, with_pseudo=True)
        train_ids, val_ids = fold_split(cfg, fold, labels)
        data = build_fold_data(cfg, train_ids, val_ids, labels, info)
        truth = TruthTable(cfg, labels)
        shape = oof_shape(cfg, data)
        run = cls(cfg, fold, data, truth, shape, _build_trainer(cfg, fold, resume, data, rt, info), info)
        run.prepare(resume)
        return run

    @property
    def fold_dir(self) -> Path:
        return self.cfg.fold_dir(self.fold)

    @property
    def progress(self) -> Progress:
        return self.trainer.progress

    def prepare(self, resume: bool) -> None:
        """Rank 0: fold folder, stale files of an older run removed (all of them unless ``resume``), config,
        ``oof_ids.csv`` and the tracker; then every rank waits."""
        cfg, fold_dir, progress = self.cfg, self.fold_dir, self.progress
        if cfg.train.select == "last" and cfg.sched.name == "plateau" and self.info.is_main:
            log.warning(
                "train.select=last with sched.name=plateau: the learning rate still reacts to the held fold's "
                "metric, so the CV estimate is not entirely free of it (use cosine, onecycle or step)"
            )
        if self.info.is_main:
            fold_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(fold_dir)  # left by a run killed inside an atomic write
            if not resume:  # a fresh run replaces every artefact of an older one
                for name in (BEST, LAST, OOF_FILE, OOF_AUX_FILE, METRICS_CSV, SWA_CKPT):
                    (fold_dir / name).unlink(missing_ok=True)
                prune_epochs(cfg, self.fold, [])
                for stale in fold_dir.glob(f"{TTA_OOF_PREFIX}*"):  # re-predicted OOF of the old weights
                    stale.unlink(missing_ok=True)
            save_config(cfg)
            write_ids(fold_dir / OOF_IDS_FILE, self.data.val_ids)
            self.tracker = start_tracker(cfg, self.fold, progress.wandb_id)
            progress.wandb_id = self.tracker.run_id or progress.wandb_id
        D.barrier(self.info)

    def run_epoch(self) -> None:
        """Train, validate and book the next epoch, then write its artefacts (rank 0) and wait for every rank."""
        epoch, t0, lr = self.progress.epoch, time.time(), self.trainer.lr
        train_loss = self._train(epoch)
        val_loss, score, keep, res = self._validate(epoch)
        self.trainer.schedule.step_epoch(score)
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_metric": score,
            "seconds": round(time.time() - t0, 3),
        }
        self.progress.record(row, self.cfg.train.patience)
        if self.info.is_main:
            self._write(row, keep, res)
        D.barrier(self.info)

    def _train(self, epoch: int) -> float:
        """Mean training loss of 0-based ``epoch`` over every rank's images (NaN when every batch was skipped)."""
        net = self.trainer.net(epoch)
        self.data.train_sampler.set_epoch(epoch)
        desc = f"{fold_dir_name(self.fold)} ep{epoch + 1} train"
        tl_sum, tl_n = train_epoch(self.trainer, net, self.data.train_loader, desc)
        tl_sum, tl_n = D.all_reduce_sum([tl_sum, float(tl_n)], self.info)
        return tl_sum / tl_n if tl_n else math.nan

    def _validate(self, epoch: int) -> tuple[float, float, bool, ValOutput]:
        """(val loss, metric, kept, outputs) of 0-based ``epoch``: the validated weights (EMA with ``train.ema``)
        scored on the held fold; its OOF becomes ``oof.npy`` when the epoch is kept (``train.select``)."""
        last = self.cfg.train.select == "last"
        return self.validate_model(
            self.trainer.eval_model, f"ep{epoch + 1}", lambda s: last or self.progress.improves(s)
        )

    def validate_model(
        self, eval_model: torch.nn.Module, label: str, keep_rule: Callable[[float], bool]
    ) -> tuple[float, float, bool, ValOutput]:
        """(val loss, metric, kept, outputs) of ``eval_model`` on the held fold; its OOF becomes ``oof.npy`` when
        ``keep_rule(metric)`` (the epoch rule, or ``kseg.train.swa``'s for averaged weights)."""
        cfg, fold_dir, data, info = self.cfg, self.fold_dir, self.data, self.info
        D.broadcast_buffers(eval_model, info)  # each rank's last BN update saw only its own batch
        writer = OofWriter(fold_dir / OOF_FILE, self.shape) if self.shape[0] else None
        try:
            res = validate(
                eval_model,
                data.val_loader,
                data.val_index,
                self.trainer.loss_fn,
                self.truth,
                writer,
                cfg,
                self.trainer.rt,
                desc=f"{fold_dir_name(self.fold)} {label} val",
                n_images=cfg.train.log_images if info.is_main else 0,
            )
            val_loss, score = _reduce_val(res, list(data.val_ids), cfg.competition, info, cfg.tile.enabled)
            keep = keep_rule(score)  # these weights go to best.pt + oof.npy
            _store_oof(writer, keep, fold_dir, data, info, res)
        except BaseException:
            if writer is not None:
                writer.discard()
            raise
        return val_loss, score, keep, res

    def _write(self, row: dict[str, float], keep: bool, res: ValOutput) -> None:
        """Rank 0: ``best.pt`` (a kept epoch), ``metrics.csv``, ``last.pt``, tracker and log line of epoch ``row``."""
        cfg, fold_dir, t, trainer = self.cfg, self.fold_dir, self.cfg.train, self.trainer
        epoch, score, metric = int(row["epoch"]), row["val_metric"], cfg.competition.metric
        if keep:
            best = {"epoch": epoch, "score": score, "metric": metric, "select": t.select}
            save_checkpoint(fold_dir / BEST, trainer.eval_model, cfg, **best)
        keep_epoch(cfg, self.fold, trainer.eval_model, self.progress)  # train.swa: a checkpoint to average later
        write_metrics_csv(fold_dir / METRICS_CSV, self.progress.history)
        trainer.save(fold_dir / LAST)
        prune_epochs(cfg, self.fold, self.progress.swa_candidates(t.swa, t.swa_k))
        logged = {"epoch": epoch, "lr": row["lr"], "train/loss": row["train_loss"], "val/loss": row["val_loss"]}
        self.tracker.log({**logged, f"val/{metric}": score}, step=epoch)
        self.tracker.log_images(res.images, step=epoch)
        log.info(
            "fold %d epoch %d/%d: lr %.2e train_loss %.4f val_loss %.4f val_%s %.4f%s (%.0fs)",
            self.fold,
            epoch,
            t.epochs,
            row["lr"],
            row["train_loss"],
            row["val_loss"],
            metric,
            score,
            " *" if keep else "",
            row["seconds"],
        )

    def finish(self) -> None:
        """Log an early stop; the tracker's run summary."""
        p = self.progress
        if p.stopped_early:
            log.info(
                "fold %d: early stop after epoch %d (no improvement for %d epochs)", self.fold, p.epoch, p.bad_epochs
            )
        selected = p.selected(self.cfg.train.select)[1]
        self.tracker.summary({"best_val_metric": p.best_score, "best_epoch": p.best_epoch, "selected_epoch": selected})


def _build_trainer(cfg: Config, fold: int, resume: bool, data: FoldData, rt: Runtime, info: D.DistInfo) -> Trainer:
    """Model (pretrained encoder, ``train.init_from`` weights or, resuming, none), loss and ``Trainer`` of ``fold``;
    with ``resume`` its whole state from ``last.pt``."""
    init = bool(cfg.train.init_from) and not resume
    # weights come from init_from (or last.pt): no pretrained-encoder download
    offline = cfg.replace(model=dataclasses.replace(cfg.model, encoder_weights=None))
    model = build_model(offline if init or resume else cfg)
    if init:
        init_weights(model, cfg.train.init_from, fold, cfg.runs_dir)
    model = model.to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    maybe_compile(model, cfg.train.compile)
    log.info("fold %d: %s%s", fold, rt.describe(), ", torch.compile" if cfg.train.compile else "")
    steps_per_epoch = math.ceil(len(data.train_loader) / max(1, cfg.train.accumulate))
    trainer = Trainer.build(cfg, model, build_loss(cfg).to(rt.device), steps_per_epoch, rt, info, data.generator)
    if resume:
        trainer.resume(cfg.fold_dir(fold) / LAST)
        p = trainer.progress
        log.info("fold %d: resumed after epoch %d (best %.4f at epoch %d)", fold, p.epoch, p.best_score, p.best_epoch)
    return trainer


def _store_oof(
    writer: OofWriter | None, improved: bool, fold_dir: Path, data: FoldData, info: D.DistInfo, res: ValOutput
) -> None:
    """Keep this epoch's OOF as ``oof.npy`` (+ ``oof_aux.npy`` with an aux head) when it is kept (``improved``:
    a better metric, or any epoch with ``train.select=last``; merging rank parts under DDP), else drop it."""
    aux = res.aux_array()
    if not info.distributed:
        if writer is not None and improved:
            if aux is not None:
                write_aux(fold_dir / OOF_AUX_FILE, aux)
            writer.commit()
        elif writer is not None:
            writer.discard()
        return
    tmp = str(writer.close()) if writer is not None else ""
    parts = D.all_gather_objects((tmp, data.val_index, aux), info)
    if improved and info.is_main:
        if any(a is not None for _, _, a in parts):
            full = np.zeros((len(data.val_ids), _aux_channels(parts)), dtype=np.uint8)
            for _, idx, a in parts:
                if a is not None and len(idx):
                    full[np.asarray(idx)] = a
            write_aux(fold_dir / OOF_AUX_FILE, full)
        merge_parts([(p, idx) for p, idx, _ in parts], fold_dir / OOF_FILE, len(data.val_ids))
    D.barrier(info)
    if writer is not None:
        writer.discard()


def init_weights(model: torch.nn.Module, template: str, fold: int, runs_dir: str | Path = RUNS_DIR) -> Path:
    """Load the weights of checkpoint ``template.format(fold=fold, runs_dir=runs_dir)`` into ``model`` (a later
    training stage), e.g. ``{runs_dir}/tgs-salt/unet-r34/fold{fold}/best.pt``.

    Only the weights: optimizer, schedule and epoch start fresh. The checkpoint must be a kseg checkpoint of
    the same architecture (e.g. a BCE stage before a lovasz fine-tuning stage).
    """
    from kseg.atomic import torch_load

    try:
        path = Path(template.format(fold=fold, runs_dir=runs_dir))
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(
            f"train.init_from: {template!r} is not a path template (only {{fold}} and {{runs_dir}} are filled in): {e}"
        ) from e
    if not path.is_file():
        raise FileNotFoundError(f"train.init_from: checkpoint {path} not found (fold {fold}; train that stage first)")
    ckpt = torch_load(path, map_location="cpu")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"train.init_from: {path} is not a kseg checkpoint (no 'state_dict')")
    try:
        model.load_state_dict(validated_state_dict(ckpt, path)[0])  # last.pt of an EMA run: its EMA weights
    except RuntimeError as e:
        saved = ckpt.get("config", {}).get("model", {})
        raise ValueError(
            f"train.init_from: {path} ({saved.get('arch')}/{saved.get('encoder')}, aux_head="
            f"{saved.get('aux_head')}) does not fit this model: {str(e)[:300]}"
        ) from e
    log.info(
        "fold %d: weights initialised from %s (epoch %s, %s %s)",
        fold,
        path,
        ckpt.get("epoch"),
        ckpt.get("metric"),
        ckpt.get("score"),
    )
    return path


def _aux_channels(parts: Sequence[tuple[str, Sequence[int], np.ndarray | None]]) -> int:
    """Number of aux channels in gathered OOF parts (the first rank that has any)."""
    return next(a.shape[1] for _, _, a in parts if a is not None)


def train_folds(cfg: Config, folds: Sequence[int], resume: bool = False) -> list[FoldResult]:
    """Train ``folds`` one after another in this process (joining torchrun's process group if any)."""
    info = D.init_distributed(cfg.train.device)
    try:
        return [train_fold(cfg, k, resume=resume, info=info) for k in folds]
    finally:
        D.cleanup()
