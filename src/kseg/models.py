"""Segmentation models from segmentation-models-pytorch, their outputs, and checkpoint files.

``build_model(cfg)`` wraps ``smp.create_model`` so ``forward(x[N,3,h,w])`` returns
``{"mask": logits [N,K,h,w], "aux": logits [N,C]}`` (``aux`` only with ``model.aux_head``); K = C for
binary/multilabel (sigmoid), K = C+1 for multiclass (softmax, background at channel 0).
``save_checkpoint`` / ``load_checkpoint`` store the state dict with the resolved config, so a checkpoint
alone rebuilds its model (no network: it is built with ``encoder_weights=None`` then loaded).
``validated_state_dict`` picks the weights a checkpoint was validated with: a ``last.pt`` of a
``train.ema`` run keeps the raw weights in ``state_dict`` and the validated EMA weights under ``ema``.
"""

from __future__ import annotations

import dataclasses
import logging
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

from kseg import __version__
from kseg.atomic import CorruptFileError, atomic_torch_save, torch_load
from kseg.config import Config, config_from_dict, config_to_dict
from kseg.data.inputs import input_channels
from kseg.registry import Registry

log = logging.getLogger(__name__)

ARCHS: Registry[type[nn.Module]] = Registry("model.arch")
"""smp's architectures by class name (``Unet``, ``UnetPlusPlus`` ...), in smp's order; any case is accepted."""
for _cls in smp.MODEL_ARCHITECTURES_MAPPING.values():
    ARCHS.register(_cls.__name__, _cls)

WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
_PREFIXES = ("module.", "net.", "encoder.", "model.")


def num_outputs(cfg: Config) -> int:
    """Mask channels K the network predicts: C (sigmoid modes) or C + 1 (multiclass, background first)."""
    c = cfg.competition.num_classes
    return c + 1 if cfg.competition.mode == "multiclass" else c


class SegModel(nn.Module):
    """An smp model whose forward returns ``{"mask": [N,K,h,w], "aux": [N,C]}`` (aux only with a head)."""

    def __init__(self, net: nn.Module, aux_head: bool) -> None:
        super().__init__()
        self.net = net
        self.aux_head = aux_head

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        if self.aux_head:
            mask, aux = out
            return {"mask": mask, "aux": aux}
        return {"mask": out}


def is_weights_file(value: str) -> bool:
    """Whether ``model.encoder_weights`` names a local file rather than an smp weights name."""
    return Path(value).exists() or value.endswith(WEIGHT_FILE_SUFFIXES) or "/" in value or "\\" in value


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file (.safetensors, or a torch file holding a state dict / a checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.encoder_weights: weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch_load(path)
    if isinstance(obj, dict) and "state_dict" in obj and "config" in obj:  # a kseg checkpoint
        obj = validated_state_dict(obj, path)[0]
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"model.encoder_weights: {path} does not hold a state dict")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _strip_prefixes(state: dict[str, torch.Tensor], own: set[str]) -> dict[str, torch.Tensor]:
    """Peel wrapper prefixes (``module.``, ``net.``, ``encoder.``...) and keep the version matching ``own`` best."""
    best, cur = state, state
    for _ in range(8):
        p = next((p for p in _PREFIXES if any(k.startswith(p) for k in cur)), None)
        if p is None:
            break
        cur = {k[len(p) :] if k.startswith(p) else k: v for k, v in cur.items()}
        if len(own & set(cur)) > len(own & set(best)):
            best = cur
    return best


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Load a local weights file into ``encoder`` (non-strict); returns (missing, ignored) key lists.

    Keys are matched after stripping wrapper prefixes; keys with another shape are ignored. Raises
    when no key matches (the wrong file), warns about missing keys.
    """
    own = encoder.state_dict()
    state = _strip_prefixes(read_state_dict(path), set(own))
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    ignored = sorted(set(state) - set(usable))
    if not usable:
        raise ValueError(
            f"model.encoder_weights: no tensor of {path} matches the encoder "
            f"(file keys like {sorted(state)[:3]}, encoder keys like {sorted(own)[:3]})"
        )
    nn.Module.load_state_dict(encoder, usable, strict=False)  # bypass smp's override: we report keys
    missing = sorted(set(own) - set(usable))
    if missing:
        log.warning("encoder weights %s: %d encoder tensors not in the file, e.g. %s", path, len(missing), missing[:5])
    if ignored:
        log.info("encoder weights %s: ignored %d tensors (not in the encoder or other shape)", path, len(ignored))
    return missing, ignored


class WeightsUnavailableError(ValueError):
    """Pretrained encoder weights are neither in the local cache nor downloadable (no internet).

    A ``ValueError`` so ``kseg`` reports it as a one-line error (exit 1) like config errors.
    """


def weights_unavailable_message(encoder: str, weights: str, cause: BaseException) -> str:
    """What failed (encoder, weights, Hub repo, cache folder) and the three ways out."""
    from huggingface_hub import constants

    settings = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {}).get(weights, {})
    repo = f" (Hugging Face repo {settings['repo_id']})" if "repo_id" in settings else ""
    return (
        f"model.encoder_weights={weights!r} of model.encoder={encoder!r}{repo}: the pretrained weights are not in "
        f"the local cache {constants.HF_HUB_CACHE} and cannot be downloaded ({type(cause).__name__}: no internet "
        "or HF_HUB_OFFLINE=1). Either (1) run this command once on a machine with internet: it downloads them into "
        "the cache (HF_HOME / HF_HUB_CACHE choose the folder) and later offline runs find them there; "
        f"(2) point at a local weights file: model.encoder_weights=/path/to/{encoder}.safetensors (or .pth/.pt/.bin); "
        "or (3) train from scratch: model.encoder_weights=none"
    )


@contextmanager
def weights_errors(encoder: str, weights: str | None) -> Iterator[None]:
    """Turn the Hub's "cannot find the requested files in the local cache" into ``WeightsUnavailableError``."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        yield
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, urllib.error.URLError, ConnectionError) as e:
        if weights is None:
            raise
        raise WeightsUnavailableError(weights_unavailable_message(encoder, weights, e)) from e


def fetch_encoder_weights(cfg: Config) -> None:
    """Find the pretrained weights ``cfg.model.encoder_weights`` names in the cache (downloading them when online).

    Nothing to do for ``none`` or a local weights file. Raises ``WeightsUnavailableError`` offline with an
    empty cache, ``ValueError`` for a weights name the encoder does not have.
    """
    m = cfg.model
    if m.encoder_weights is None or is_weights_file(m.encoder_weights):
        return
    with weights_errors(m.encoder, m.encoder_weights):
        try:
            smp.encoders.get_encoder(m.encoder, in_channels=3, weights=m.encoder_weights)
        except KeyError as e:
            raise ValueError(f"model.encoder_weights: {e.args[0] if e.args else e}") from e


def build_model(cfg: Config) -> SegModel:
    """The smp model of ``cfg.model``: ``input_channels`` in, K output channels out (see ``num_outputs``)."""
    m = cfg.model
    kwargs: dict[str, Any] = dict(m.kwargs)
    aux_extra = kwargs.pop("aux_params", {}) or {}
    weights = m.encoder_weights
    local = weights is not None and is_weights_file(weights)
    if m.aux_head:
        kwargs["aux_params"] = {"classes": cfg.competition.num_classes, "dropout": 0.2, **aux_extra}
    hub = None if local else weights
    try:
        with weights_errors(m.encoder, hub):
            net = smp.create_model(
                m.arch,
                encoder_name=m.encoder,
                encoder_weights=hub,
                in_channels=input_channels(cfg.competition),
                classes=num_outputs(cfg),
                **kwargs,
            )
    except WeightsUnavailableError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"model: cannot build {m.arch} with encoder {m.encoder} and kwargs {kwargs}: {e}") from e
    if local:
        load_encoder_weights(net.encoder, weights)  # type: ignore[arg-type]
    return SegModel(net, aux_head=m.aux_head)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP / EMA (AveragedModel) / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, (nn.parallel.DistributedDataParallel, torch.optim.swa_utils.AveragedModel)):
            model = model.module
        else:
            return model


def set_encoder_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze (``requires_grad=False``) or unfreeze the encoder's parameters."""
    for p in unwrap(model).encoder.parameters():  # type: ignore[union-attr]
        p.requires_grad_(trainable)


def probs_from_output(out: dict[str, torch.Tensor], mode: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Model output -> (probs [N,C,h,w] float32, aux probs [N,C] | None).

    Sigmoid for binary/multilabel; softmax for multiclass with the background channel 0 dropped.
    """
    logits = out["mask"].float()
    if mode == "multiclass":
        probs = logits.softmax(dim=1)[:, 1:]
    else:
        probs = logits.sigmoid()
    aux = out.get("aux")
    return probs, (aux.float().sigmoid() if aux is not None else None)


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Probabilities of a batch x [N,3,h,w]: (probs [N,C,h,w], aux probs [N,C] | None)."""
    return probs_from_output(model(x), mode)


def save_checkpoint(path: str | Path, model: nn.Module, cfg: Config, **extra: Any) -> None:
    """Atomically write {"state_dict", "config" (plain dict), "kseg_version", **extra} to ``path``."""
    payload = {
        "state_dict": unwrap(model).state_dict(),
        "config": config_to_dict(cfg),
        "kseg_version": __version__,
        **extra,
    }
    atomic_torch_save(payload, path)


EMA_PREFIX = "module."  # AveragedModel.state_dict(): "module.<key>" per tensor + "n_averaged"


def validated_state_dict(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, "ema" | "state_dict"): the weights a kseg checkpoint was validated with.

    ``best.pt`` stores them as ``state_dict`` (with ``train.ema`` that already is the EMA model);
    ``last.pt`` of an EMA run stores the raw weights there and the EMA ones under ``ema``
    (``AveragedModel.state_dict()``), which are the ones validation scored: those are returned.
    """
    ema = ckpt.get("ema")
    if ema is None:
        return ckpt["state_dict"], "state_dict"
    if not isinstance(ema, dict):
        raise ValueError(f"{path}: 'ema' is a {type(ema).__name__}, expected AveragedModel.state_dict()")
    state = {k[len(EMA_PREFIX) :]: v for k, v in ema.items() if k.startswith(EMA_PREFIX)}
    if not state:
        raise ValueError(f"{path}: 'ema' holds no '{EMA_PREFIX}*' tensors (keys like {sorted(ema)[:3]})")
    return state, "ema"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[SegModel, Config]:
    """(model in eval mode, Config) rebuilt from the checkpoint file alone; no weights download.

    The weights are the validated ones (``validated_state_dict``): EMA weights of a ``train.ema`` run.
    """
    path = Path(path)
    try:
        ckpt = torch_load(path, map_location=map_location)
    except CorruptFileError as e:
        raise CorruptFileError(
            f"{e}: copy it again from where it came from, or retrain that fold with `kseg train -c <config> --fold K`"
        ) from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path}: not a kseg checkpoint (needs keys 'state_dict' and 'config')")
    cfg = config_from_dict(ckpt["config"])
    offline = cfg.replace(model=dataclasses.replace(cfg.model, encoder_weights=None))
    model = build_model(offline)
    state, source = validated_state_dict(ckpt, path)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: {source} does not fit {cfg.model.arch}/{cfg.model.encoder}: {e}") from e
    if source == "ema":
        log.info("%s: loaded the EMA weights (the validated ones), not the raw training weights", path)
    return model.to(map_location).eval(), cfg
