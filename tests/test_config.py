from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from kseg.config import (
    Config,
    LossTerm,
    config_from_dict,
    config_to_dict,
    experiment_name,
    load_config,
    read_saved_config,
    save_config,
)
from kseg.typed import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SHIPPED = ["demo.yaml", "tgs-salt/unet-r34.yaml", "isbi2012/unet.yaml"]


@pytest.mark.parametrize("rel", SHIPPED)
def test_shipped_experiments_load_and_round_trip(rel: str, tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / rel)
    assert cfg.name == rel[: -len(".yaml")]
    path = save_config(cfg, tmp_path / "config.yaml")
    assert read_saved_config(path) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_experiment_name_and_run_dir() -> None:
    cfg = load_config(CONFIGS / "tgs-salt/unet-r34.yaml")
    assert experiment_name(CONFIGS / "tgs-salt/unet-r34.yaml") == "tgs-salt/unet-r34"
    assert cfg.run_dir == Path("runs/tgs-salt/unet-r34")
    assert cfg.fold_dir(3) == Path("runs/tgs-salt/unet-r34/fold3")
    assert cfg.data_root == Path("input/tgs-salt")
    assert cfg.folds_path == Path("input/tgs-salt/folds.csv")


def test_defaults_chain_then_experiment_then_overrides() -> None:
    cfg = load_config(
        CONFIGS / "tgs-salt/unet-r34.yaml",
        [
            "train.epochs=3",
            "model.encoder=resnet18",
            "data.image_size=96",
            "optim.lr=0.01",
            "model.encoder_weights=none",
            "wandb.mode=disabled",
            "data.batch_size=4",
            "data.num_workers=0",
            "train.seed=7",
            "data.root=/x/y",
        ],
    )
    assert cfg.train.epochs == 3  # override beats the experiment's 40
    assert cfg.model.encoder == "resnet18"
    assert cfg.data.image_size == (96, 96)  # scalar expands to (H, W)
    assert cfg.optim.lr == 0.01 and isinstance(cfg.optim.lr, float)
    assert cfg.model.encoder_weights is None
    assert cfg.wandb.mode == "disabled"
    assert (cfg.data.batch_size, cfg.data.num_workers, cfg.train.seed) == (4, 0, 7)
    assert cfg.data_root == Path("/x/y")
    assert cfg.data.resize == "pad"  # from the experiment file
    assert cfg.train.amp is True  # from base.yaml
    assert cfg.competition.metric == "iou_ap"  # from the competition spec


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.arch=Unett", "model.arch: 'Unett' is not one of Unet, UnetPlusPlus, MAnet"),
        ("train.epochs=abc", "train.epochs: expected an integer, got 'abc'"),
        ("train.epochs=2.5", "train.epochs: expected an integer, got 2.5"),
        ("data.foo=1", "unknown key data.foo: valid keys here are"),
        ("bogus=1", "unknown key bogus"),
        ("wandb.mode=loud", "wandb.mode: 'loud' is not one of online, offline, disabled"),
        ("data.resize=crop", "data.resize: 'crop' is not one of resize, pad"),
        ("optim.name=lamb", "optim.name: 'lamb' is not one of adam, adamw, sgd, rmsprop"),
        ("data.image_size=[1,2,3]", "data.image_size: expected 2 values"),
        ("train.amp=maybe", "train.amp: expected true/false, got 'maybe'"),
        ("trainepochs", "expected key=value"),
    ],
)
def test_bad_overrides_name_key_value_and_choices(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "demo.yaml", [override])
    assert message in str(e.value)


def test_dotted_overrides_reach_into_dict_fields() -> None:
    from kseg.config import load_config

    demo = REPO / "configs" / "demo.yaml"  # model.kwargs {encoder_depth: 3, ...} in the file
    cfg = load_config(
        demo,
        ["model.kwargs.decoder_channels=[16, 8, 8]", "competition.metric=fbeta", "competition.metric_params.beta=2"],
    )
    assert cfg.model.kwargs["decoder_channels"] == [16, 8, 8]
    assert cfg.model.kwargs["encoder_depth"] == load_config(demo).model.kwargs["encoder_depth"]  # merged, kept
    assert cfg.competition.metric_params == {"beta": 2}
    with pytest.raises(ConfigError, match="unknown key competition.metric_params.gamma for metric fbeta"):
        load_config(demo, ["competition.metric=fbeta", "competition.metric_params.gamma=1"])
    with pytest.raises(ConfigError, match=r"competition.metric_params.beta: -1.0 is out of range"):
        load_config(demo, ["competition.metric=fbeta", "competition.metric_params.beta=-1"])
    with pytest.raises(ConfigError, match="unknown key model.kwargz.x: valid keys here are"):
        load_config(demo, ["model.kwargz.x=1"])


def test_unknown_key_in_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "configs" / "competitions").mkdir(parents=True)
    (tmp_path / "configs" / "competitions" / "c.yaml").write_text((CONFIGS / "competitions/tgs-salt.yaml").read_text())
    exp = tmp_path / "configs" / "exp.yaml"
    exp.write_text("competition: c\ntrain:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key train\.epochz"):
        load_config(exp)


def test_loss_list_and_bad_loss_name(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "demo.yaml", ["loss=[{name: focal, weight: 2, params: {gamma: 3}}]"])
    assert cfg.loss == (LossTerm("focal", 2.0, {"gamma": 3}),)
    with pytest.raises(ConfigError, match=r"loss\[0\]\.name: 'xx' is not one of bce"):
        load_config(CONFIGS / "demo.yaml", ["loss=[{name: xx}]"])


def test_local_defaults_and_inline_competition(tmp_path: Path) -> None:
    root = tmp_path / "configs"
    (root / "comp").mkdir(parents=True)
    (root / "base.yaml").write_text("train: {epochs: 5, seed: 1}\ndata: {batch_size: 3}\n")
    (root / "comp" / "mid.yaml").write_text("defaults: [base]\ntrain: {epochs: 6}\n")
    (root / "comp" / "exp.yaml").write_text(
        "defaults: [mid]\nname: custom\n"
        "competition: {name: x, classes: [a, b], mode: multilabel, train: {format: long}, submission: {format: long}}\n"
        "train: {seed: 9}\n"
    )
    cfg = load_config(root / "comp" / "exp.yaml")
    assert (cfg.train.epochs, cfg.train.seed, cfg.data.batch_size) == (6, 9, 3)
    assert cfg.name == "custom" and cfg.run_dir == Path("runs/custom")
    assert cfg.competition.classes == ("a", "b") and cfg.competition.labels == ("1", "2")


def test_circular_defaults_fail(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("defaults: [b]\n")
    (tmp_path / "b.yaml").write_text("defaults: [a]\n")
    with pytest.raises(ConfigError, match="circular defaults"):
        load_config(tmp_path / "a.yaml")


def test_config_is_frozen() -> None:
    cfg = load_config(CONFIGS / "demo.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 3  # type: ignore[misc]
    assert isinstance(cfg, Config)


def test_saved_yaml_is_plain_and_complete(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "demo.yaml", ["train.epochs=2"])
    data = yaml.safe_load(save_config(cfg, tmp_path / "c.yaml").read_text())
    assert data["train"]["epochs"] == 2
    assert data["competition"]["name"] == "demo"  # the spec is embedded: the file alone rebuilds the run
    assert data["data"]["image_size"] == [128, 256]


def test_name_choices_come_from_the_registries_that_build_them() -> None:
    import segmentation_models_pytorch as smp

    from kseg.losses import LOSSES
    from kseg.models import ARCHS
    from kseg.optim import OPTIMIZERS, SCHEDULERS
    from kseg.tta import TTA_MODES

    assert [a.lower() for a in ARCHS.choices()] == list(smp.MODEL_ARCHITECTURES_MAPPING)
    for key, registry in [
        ("model.arch", ARCHS),
        ("optim.name", OPTIMIZERS),
        ("sched.name", SCHEDULERS),
        ("predict.tta", TTA_MODES),
        ("tune.oof_tta", TTA_MODES),
    ]:
        with pytest.raises(ConfigError) as e:
            load_config(CONFIGS / "demo.yaml", [f"{key}=zz"])
        assert f"{key}: 'zz' is not one of " in str(e.value) and str(e.value).endswith(", ".join(registry.choices()))
    with pytest.raises(ConfigError, match=f"loss\\[0\\]\\.name: 'zz' is not one of {', '.join(LOSSES.choices())}"):
        load_config(CONFIGS / "demo.yaml", ["loss=[{name: zz}]"])


def test_names_are_stored_in_the_registered_spelling_with_the_closest_name_on_error() -> None:
    cfg = load_config(CONFIGS / "demo.yaml", ["model.arch=unetplusplus", "predict.tta=D4", "tune.oof_tta=''"])
    assert (cfg.model.arch, cfg.predict.tta, cfg.tune.oof_tta) == ("UnetPlusPlus", "d4", "")
    with pytest.raises(ConfigError, match=r"is not one of '', none, hflip, vflip, hvflip, d4; did you mean hvflip\?"):
        load_config(CONFIGS / "demo.yaml", ["tune.oof_tta=hvflp"])
    with pytest.raises(ConfigError, match=r"model.arch: 'Unett' is not one of .*; did you mean Unet\?$"):
        load_config(CONFIGS / "demo.yaml", ["model.arch=Unett"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.image_size=[0, 5]", "data.image_size: [0, 5] is out of range; valid: two sizes >= 1"),
        ("data.val_batch_size=-1", "data.val_batch_size: -1 is out of range; valid: >= 0 (0 = 2 x batch_size)"),
        ("train.clip_grad=-1", "train.clip_grad: -1.0 is out of range; valid: >= 0 (0 = off)"),
        ("train.val_threshold=2", "train.val_threshold: 2.0 is out of range; valid: in [0, 1]"),
        ("predict.pseudo_confidence=0.3", "predict.pseudo_confidence: 0.3 is out of range; valid: in [0.5, 1)"),
        ("sched.warmup_epochs=-1", "sched.warmup_epochs: -1.0 is out of range; valid: in [0, train.epochs=4]"),
    ],
)
def test_value_rules_fail_at_load_naming_key_value_and_range(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "demo.yaml", [override])
    assert message in str(e.value)


def test_validate_rechecks_a_config_built_in_code() -> None:
    import dataclasses

    from kseg.typed import validate

    cfg = load_config(CONFIGS / "demo.yaml")
    validate(cfg)
    bad = cfg.replace(loss=(LossTerm("dicee"),), data=dataclasses.replace(cfg.data, batch_size=0))
    with pytest.raises(ConfigError, match=r"data.batch_size: 0 is out of range; valid: >= 1"):
        validate(bad)
    with pytest.raises(ConfigError, match=r"loss\[0\]\.name: 'dicee' is not one of bce"):
        validate(bad.replace(data=cfg.data))
