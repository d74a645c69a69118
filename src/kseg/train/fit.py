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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from kseg.config import Config, config_to_dict, save_config
from kseg.data.dataset import read_labels
from kseg.data.folds import fold_split
from kseg.data.geometry import submission_size
from kseg.losses import build_loss
from kseg.metrics import score_from_stats
from kseg.models import build_model, save_checkpoint, set_encoder_trainable, validated_state_dict
from kseg.optim import build_optimizer, build_scheduler
from kseg.train import dist as D
from kseg.train.data import FoldData, build_fold_data
from kseg.train.loop import Runtime, ValOutput, train_one_epoch, validate
from kseg.train.oof_store import OOF_AUX_FILE, OOF_FILE, OOF_IDS_FILE, OofWriter, merge_parts, write_aux, write_ids
from kseg.train.preflight import remove_stale_temps
from kseg.train.seed import configure_determinism, rng_state, seed_everything, set_rng_state
from kseg.train.state import BEST, LAST, METRICS_CSV, Progress, load_last, write_metrics_csv
from kseg.train.tracking import Tracker, start_tracker
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


def oof_shape(cfg: Config, data: FoldData) -> tuple[int, int, int, int]:
    """(N val images of this rank, C, H, W) at the submission size (from the spec or the first image)."""
    native = cfg.competition.image_size
    if native is None and cfg.competition.submission_size is None:
        native = tuple(int(v) for v in data.val_ds[0]["size"].tolist())
    h, w = submission_size(cfg, native or (0, 0))
    return len(data.val_index), cfg.competition.num_classes, h, w


def _reduce_val(res: ValOutput, n_val: int, metric: str, info: D.DistInfo) -> tuple[float, float]:
    """(val loss, competition metric over every val image x class), identical on every rank."""
    loss_sum, count = D.all_reduce_sum([res.loss_sum, float(res.count)], info)
    parts = D.all_gather_objects(res.stats(), info)
    pos = np.concatenate([np.asarray(p[0], dtype=np.int64) for p in parts])
    if len(pos) != n_val or len(np.unique(pos)) != n_val:
        raise RuntimeError(f"validation covered {len(np.unique(pos))} of {n_val} images")
    stats = [np.concatenate([p[k] for p in parts if len(p[0])]) for k in (1, 2, 3)]
    score = score_from_stats(*stats, metric)
    return (loss_sum / count if count else math.nan), score


def unused_parameters(model: torch.nn.Module, cfg: Config, rt: Runtime) -> list[torch.nn.Parameter]:
    """Trainable parameters that get no gradient (e.g. ResNet layer4 with ``encoder_depth=3``).

    Found with one eval-mode forward/backward (no BN statistics or RNG touched).
    """
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, *cfg.data.image_size, device=rt.device)
    with rt.autocast():
        out = model(x)
    sum(v.float().sum() for v in out.values()).backward()
    unused = [p for p in model.parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return unused


def _wrap(model: torch.nn.Module, cfg: Config, rt: Runtime, info: D.DistInfo) -> torch.nn.Module:
    """DDP around ``model`` (identity for one process); parameters without gradients are frozen first."""
    if not info.distributed:
        return model
    unused = unused_parameters(model, cfg, rt)
    if unused:
        log.info("DDP: freezing %d parameter tensors that never get a gradient", len(unused))
        for p in unused:
            p.requires_grad_(False)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


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
    t = cfg.train
    configure_determinism(t.deterministic)
    seed_everything(t.seed)
    rt = Runtime.from_config(cfg, info)
    fold_dir = cfg.fold_dir(fold)
    labels = read_labels(cfg, with_pseudo=True)
    train_ids, val_ids = fold_split(cfg, fold, labels)
    data = build_fold_data(cfg, train_ids, val_ids, labels, info)
    truth = TruthTable(cfg, labels)
    shape = oof_shape(cfg, data)

    init = bool(t.init_from) and not resume
    # weights come from init_from (or last.pt): no pretrained-encoder download
    model = build_model(cfg.replace(model=dataclasses.replace(cfg.model, encoder_weights=None)) if init or resume else cfg)
    if init:
        init_weights(model, t.init_from, fold, cfg.runs_dir)
    model = model.to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg).to(rt.device)
    optimizer = build_optimizer(cfg, model.parameters())
    steps_per_epoch = math.ceil(len(data.train_loader) / max(1, t.accumulate))
    schedule = build_scheduler(cfg, optimizer, max(1, steps_per_epoch))
    scaler = torch.amp.GradScaler("cuda", enabled=rt.amp)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay), use_buffers=True) if t.ema else None
    progress = Progress()

    if resume:
        ckpt = load_last(fold_dir / LAST, map_location=rt.device)
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"]:  # a disabled GradScaler (CPU) saves {} and refuses to load it
            scaler.load_state_dict(ckpt["scaler"])
        if ema is not None:
            if ckpt.get("ema") is None:
                raise ValueError(f"{fold_dir / LAST}: train.ema is on but the checkpoint has no EMA weights")
            ema.load_state_dict(ckpt["ema"])
        progress = Progress.from_dict(ckpt["progress"])
        _check_resume_select(ckpt["config"], cfg, fold_dir / LAST)
        data.generator.set_state(ckpt["generator"])
        set_rng_state(ckpt["rng"])
        _warn_config_changes(ckpt["config"], cfg)
        log.info("fold %d: resumed after epoch %d (best %.4f at epoch %d)", fold, progress.epoch,
                 progress.best_score, progress.best_epoch)  # fmt: skip

    if t.select == "last" and cfg.sched.name == "plateau" and info.is_main:
        log.warning("train.select=last with sched.name=plateau: the learning rate still reacts to the held fold's "
                    "metric, so the CV estimate is not entirely free of it (use cosine, onecycle or step)")  # fmt: skip
    tracker: Tracker = Tracker()
    if info.is_main:
        fold_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(fold_dir)  # left by a run killed inside an atomic write
        if not resume:  # a fresh run replaces every artefact of an older one
            for name in (BEST, LAST, OOF_FILE, OOF_AUX_FILE, METRICS_CSV):
                (fold_dir / name).unlink(missing_ok=True)
            for stale in fold_dir.glob("oof_tta-*"):  # re-predicted OOF of the old weights
                stale.unlink(missing_ok=True)
        save_config(cfg)
        write_ids(fold_dir / OOF_IDS_FILE, data.val_ids)
        tracker = start_tracker(cfg, fold, progress.wandb_id)
        progress.wandb_id = tracker.run_id or progress.wandb_id
    D.barrier(info)

    start = time.time()
    net, frozen = model, None
    try:
        while progress.epoch < t.epochs and not progress.stopped_early:
            epoch = progress.epoch
            want_frozen = epoch < cfg.model.freeze_encoder_epochs
            if want_frozen != frozen:
                set_encoder_trainable(model, not want_frozen)
                net, frozen = _wrap(model, cfg, rt, info), want_frozen  # DDP registers trainable params at wrap time
            t0 = time.time()
            data.train_sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            tl_sum, tl_n = train_one_epoch(net, model, data.train_loader, loss_fn, optimizer, schedule, scaler, ema,
                                           cfg, rt, info, desc=f"fold{fold} ep{epoch + 1} train")  # fmt: skip
            tl_sum, tl_n = D.all_reduce_sum([tl_sum, float(tl_n)], info)
            eval_model = ema.module if ema is not None else model
            D.broadcast_buffers(eval_model, info)  # each rank's last BN update saw only its own batch
            writer = OofWriter(fold_dir / OOF_FILE, shape) if shape[0] else None
            try:
                res = validate(eval_model, data.val_loader, data.val_index, loss_fn, truth, writer, cfg, rt,
                               desc=f"fold{fold} ep{epoch + 1} val", n_images=t.log_images if info.is_main else 0)  # fmt: skip
                val_loss, score = _reduce_val(res, len(data.val_ids), cfg.competition.metric, info)
                improved = math.isfinite(score) and score > progress.best_score
                keep = improved or t.select == "last"  # this epoch goes to best.pt + oof.npy
                _store_oof(writer, keep, fold_dir, data, info, res)
            except BaseException:
                if writer is not None:
                    writer.discard()
                raise
            schedule.step_epoch(score)
            progress.epoch = epoch + 1
            if improved:
                progress.best_score, progress.best_epoch, progress.bad_epochs = score, epoch + 1, 0
            else:
                progress.bad_epochs += 1
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": tl_sum / tl_n if tl_n else math.nan, "val_loss": val_loss,
                   "val_metric": score, "seconds": round(time.time() - t0, 3)}  # fmt: skip
            progress.history.append(row)
            if t.patience and progress.bad_epochs >= t.patience:
                progress.stopped_early = True
            if info.is_main:
                if keep:
                    save_checkpoint(fold_dir / BEST, eval_model, cfg, epoch=epoch + 1, score=score,
                                    metric=cfg.competition.metric, select=t.select)  # fmt: skip
                write_metrics_csv(fold_dir / METRICS_CSV, progress.history)
                _save_last(fold_dir / LAST, model, cfg, optimizer, schedule, scaler, ema, progress, data)
                tracker.log({"epoch": epoch + 1, "lr": lr, "train/loss": row["train_loss"], "val/loss": val_loss,
                             f"val/{cfg.competition.metric}": score}, step=epoch + 1)  # fmt: skip
                tracker.log_images(res.images, step=epoch + 1)
            if info.is_main:
                log.info("fold %d epoch %d/%d: lr %.2e train_loss %.4f val_loss %.4f val_%s %.4f%s (%.0fs)", fold,
                         epoch + 1, t.epochs, lr, row["train_loss"], val_loss, cfg.competition.metric, score,
                         " *" if keep else "", row["seconds"])  # fmt: skip
            D.barrier(info)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, progress)
        if progress.stopped_early:
            log.info("fold %d: early stop after epoch %d (no improvement for %d epochs)", fold, progress.epoch,
                     progress.bad_epochs)  # fmt: skip
        tracker.summary({"best_val_metric": progress.best_score, "best_epoch": progress.best_epoch,
                         "selected_epoch": _selected(progress, t.select)[1]})  # fmt: skip
    finally:
        tracker.finish()
    return FoldResult(fold, progress.best_score, progress.best_epoch, progress.epoch, time.time() - start, fold_dir,
                      t.select, *_selected(progress, t.select))  # fmt: skip


def _selected(progress: Progress, select: str) -> tuple[float, int]:
    """(val metric, epoch) of the epoch held by best.pt / oof.npy under ``train.select``."""
    if select == "last" and progress.history:
        return float(progress.history[-1]["val_metric"]), progress.epoch
    return progress.best_score, progress.best_epoch


def _check_resume_select(saved: dict, cfg: Config, path: Path) -> None:
    """Refuse ``--resume`` with another ``train.select`` than the one best.pt / oof.npy were kept under."""
    before = saved.get("train", {}).get("select", "best")
    if before != cfg.train.select:
        raise ValueError(f"--resume: {path} was trained with train.select={before}, this run has "
                         f"train.select={cfg.train.select}: best.pt and oof.npy of the finished epochs were kept "
                         f"under the other rule. Resume with train.select={before}, or train the fold again "
                         "without --resume")  # fmt: skip


def _store_oof(writer: OofWriter | None, improved: bool, fold_dir: Path, data: FoldData, info: D.DistInfo,
               res: ValOutput) -> None:  # fmt: skip
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


def init_weights(model: torch.nn.Module, template: str, fold: int, runs_dir: str | Path = "runs") -> Path:
    """Load the weights of checkpoint ``template.format(fold=fold, runs_dir=runs_dir)`` into ``model`` (a later
    training stage), e.g. ``{runs_dir}/tgs-salt/unet-r34/fold{fold}/best.pt``.

    Only the weights: optimizer, schedule and epoch start fresh. The checkpoint must be a kseg checkpoint of
    the same architecture (e.g. a BCE stage before a lovasz fine-tuning stage).
    """
    from kseg.atomic import torch_load

    try:
        path = Path(template.format(fold=fold, runs_dir=runs_dir))
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"train.init_from: {template!r} is not a path template (only {{fold}} and {{runs_dir}} "
                         f"are filled in): {e}") from e  # fmt: skip
    if not path.is_file():
        raise FileNotFoundError(f"train.init_from: checkpoint {path} not found (fold {fold}; train that stage first)")
    ckpt = torch_load(path, map_location="cpu")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"train.init_from: {path} is not a kseg checkpoint (no 'state_dict')")
    try:
        model.load_state_dict(validated_state_dict(ckpt, path)[0])  # last.pt of an EMA run: its EMA weights
    except RuntimeError as e:
        saved = ckpt.get("config", {}).get("model", {})
        raise ValueError(f"train.init_from: {path} ({saved.get('arch')}/{saved.get('encoder')}, aux_head="
                         f"{saved.get('aux_head')}) does not fit this model: {str(e)[:300]}") from e  # fmt: skip
    log.info("fold %d: weights initialised from %s (epoch %s, %s %s)", fold, path, ckpt.get("epoch"),
             ckpt.get("metric"), ckpt.get("score"))  # fmt: skip
    return path


def _aux_channels(parts: Sequence[tuple[str, Sequence[int], np.ndarray | None]]) -> int:
    """Number of aux channels in gathered OOF parts (the first rank that has any)."""
    return next(a.shape[1] for _, _, a in parts if a is not None)


def _save_last(path: Path, model: torch.nn.Module, cfg: Config, optimizer: torch.optim.Optimizer, schedule,
               scaler: torch.amp.GradScaler, ema: AveragedModel | None, progress: Progress, data: FoldData) -> None:  # fmt: skip
    save_checkpoint(
        path,
        model,
        cfg,
        optimizer=optimizer.state_dict(),
        scheduler=schedule.state_dict(),
        scaler=scaler.state_dict(),
        ema=ema.state_dict() if ema is not None else None,
        progress=progress.to_dict(),
        rng=rng_state(),
        generator=data.generator.get_state(),
        epoch=progress.epoch,
        score=progress.best_score,
    )


def _warn_config_changes(saved: dict, cfg: Config) -> None:
    """Log the keys whose values differ between the checkpoint's config and this run's."""
    now = config_to_dict(cfg)
    diffs: list[str] = []

    def walk(a: object, b: object, key: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{key}.{k}" if key else k)
        elif a != b:
            diffs.append(f"{key}: {a!r} -> {b!r}")

    walk(saved, now, "")
    if diffs:
        log.warning("--resume with a changed config (exact continuation not guaranteed): %s", "; ".join(diffs[:10]))


def train_folds(cfg: Config, folds: Sequence[int], resume: bool = False) -> list[FoldResult]:
    """Train ``folds`` one after another in this process (joining torchrun's process group if any)."""
    info = D.init_distributed(cfg.train.device)
    try:
        return [train_fold(cfg, k, resume=resume, info=info) for k in folds]
    finally:
        D.cleanup()
