"""Item 13: bad config keys, values, types and unknown registry names fail before any work.

tests/test_config.py::test_bad_overrides_name_key_value_and_choices already covers unknown keys, wrong
types and Literal choices at load time (model.arch, optim.name, wandb.mode, data.resize ...), and
tests/test_config.py::test_loss_list_and_bad_loss_name the loss name. Here: the same errors through
``kseg train`` (exit 1, nothing read or written, training never starts), and the names only a library
knows (encoder, augment transform and its parameters, loss / optimizer / schedule parameters) plus value
ranges, which ``kseg.train.preflight`` checks before any data is read.
"""

from __future__ import annotations

import logging

import pytest

import kseg.train.fit
from kseg.cli import main
from kseg.config import load_config
from kseg.train.preflight import check_names, check_values
from kseg.typed import ConfigError

from _reliab import DEMO_YAML, REPO, overrides, tiny_cfg

CASES = [
    # registry names: key, value and the valid choices (or the closest ones for libraries with hundreds)
    ("loss=[{name: dicee}]", ["loss[0].name: 'dicee' is not one of bce, softbce, ce, dice, lovasz"]),
    ("optim.name=adamm", ["optim.name: 'adamm' is not one of adam, adamw, sgd, rmsprop"]),
    ("sched.name=cosin", ["sched.name: 'cosin' is not one of none, onecycle, cosine, plateau, step"]),
    ("model.arch=Unet3", ["model.arch: 'Unet3' is not one of Unet, UnetPlusPlus"]),
    ("model.encoder=resnet19", ["model.encoder: 'resnet19' is not one of the", "did you mean resnet18"]),
    ("model.encoder=tu-resnet19", ["model.encoder: 'tu-resnet19': timm has no model 'resnet19'", "tu-resnet18"]),
    (
        "data.augment=[{name: HorizontalFlp}]",
        ["data.augment[0].name: 'HorizontalFlp' is not an albumentations transform; did you mean HorizontalFlip"],
    ),
    (
        "data.augment=[{name: HorizontalFlip, params: {px: 1}}]",
        ["data.augment[0].params.px: HorizontalFlip has no parameter 'px'; valid: p"],
    ),
    (
        "data.augment=[{name: HorizontalFlip, params: {p: 5}}]",
        ["data.augment[0] HorizontalFlip{'p': 5}", "less than or equal to 1"],
    ),
    ("loss=[{name: focal, params: {gama: 2}}]", ["loss[0].params: focal does not accept {'gama': 2}"]),
    ("optim.params={momentum: 0.9}", ["optim.params: adamw does not accept {'momentum': 0.9}"]),
    ("sched.params={min_lrr: 0.1}", ["sched.params.min_lrr: not a cosine option; valid: min_lr"]),
    (
        "model.arch=FPN",
        ["data.image_size: [36, 64] is not divisible by 8, the output stride of FPN/resnet18", "use e.g. [40, 64]"],
    ),
    # values out of range
    ("data.batch_size=0", ["data.batch_size: 0 is out of range; valid: >= 1"]),
    ("train.epochs=-1", ["train.epochs: -1 is out of range; valid: >= 1"]),
    ("optim.lr=0", ["optim.lr: 0.0 is out of range; valid: > 0"]),
    ("train.ema_decay=1.5", ["train.ema_decay: 1.5 is out of range; valid: in (0, 1)"]),
    ("sched.warmup_epochs=5", ["sched.warmup_epochs: 5.0 is out of range; valid: in [0, train.epochs=2]"]),
    # types and keys (load time)
    ("train.epochs=two", ["train.epochs: expected an integer, got 'two'"]),
    ("train.epochz=2", ["unknown key train.epochz: valid keys here are accumulate, amp"]),
]


@pytest.mark.parametrize(
    "override, messages", CASES, ids=[c[0].split("=")[0] + "=" + c[0].split("=", 1)[1][:14] for c in CASES]
)
def test_kseg_train_fails_before_any_work(demo_root, tmp_path, monkeypatch, caplog, override, messages):
    tiny_cfg(demo_root, tmp_path)  # folds.csv
    extra = [override] + (["data.image_size=[36, 64]"] if override == "model.arch=FPN" else [])

    def never(*a, **k):
        raise AssertionError("training started despite a bad config")

    monkeypatch.setattr(kseg.train.fit, "train_folds", never)
    monkeypatch.setattr("kseg.data.dataset.read_labels", never)
    with caplog.at_level(logging.ERROR):
        assert main(["train", "-c", str(DEMO_YAML), "--fold", "0", *overrides(demo_root, tmp_path, *extra)]) == 1
    for m in messages:
        assert m in caplog.text
    assert not (tmp_path / "runs").exists()


def test_every_shipped_experiment_passes_the_checks():
    """The checks reject nothing the repo ships (each experiment's names and values are valid)."""
    shipped = [p for p in (REPO / "configs").rglob("*.yaml") if "competitions" not in p.parts and p.name != "base.yaml"]
    assert len(shipped) >= 8
    for path in shipped:
        cfg = load_config(path, ["model.encoder_weights=none"])
        check_values(cfg)
        check_names(cfg)


def test_check_names_raises_config_error_directly(demo_root, tmp_path):
    with pytest.raises(ConfigError, match="model.encoder: 'efficientnet-b9'"):
        check_names(tiny_cfg(demo_root, tmp_path, "model.encoder=efficientnet-b9"))
