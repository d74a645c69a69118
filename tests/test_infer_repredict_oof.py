"""OOF re-prediction with TTA (``kseg predict --oof``), tuning on it (``tune.oof_tta``), training's
``oof_aux.npy`` and multi-stage training (``train.init_from``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kseg.cli import main
from kseg.config import Config
from kseg.data.dataset import SegDataset
from kseg.data.geometry import restore
from kseg.data.pixels import model_input
from kseg.layout import oof_files
from kseg.models import build_model, load_checkpoint, predict_proba
from kseg.postprocess import quantize
from kseg.train.fit import init_weights, train_fold
from kseg.train.oof_store import read_oof
from kseg.tune.run import tune

from _train_support import REPO, TINY, oof_score, tiny_config, val_ids


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory) -> Config:
    """Fold 0 of the tiny demo model with an aux head, trained for one epoch."""
    cfg = tiny_config(demo_root, tmp_path_factory.mktemp("oof"), "model.aux_head=true", "train.device=cpu")
    train_fold(cfg, 0)
    return cfg


def _cli(cfg: Config, *args: str) -> list[str]:
    return [
        "-c",
        str(REPO / "configs/demo.yaml"),
        f"data.root={cfg.data.root}",
        f"data.folds_csv={cfg.folds_path}",
        f"runs_dir={cfg.runs_dir}",
        *TINY,
        "model.aux_head=true",
        "train.device=cpu",
        *args,
    ]


def test_training_writes_aux_oof_matching_the_checkpoint(trained: Config):
    d = trained.fold_dir(0)
    oof, ids = read_oof(d)
    aux = np.load(d / "oof_aux.npy")
    assert aux.dtype == np.uint8 and aux.shape == (len(ids), 4)
    model, ccfg = load_checkpoint(d / "best.pt")
    ds = SegDataset(trained, ids[:3], train=False)
    for i in range(3):
        _, a = predict_proba(model, model_input(ds[i]["image"][None], trained.data.normalize), ccfg.competition.mode)
        expected = np.rint(a[0].numpy() * 255)
        assert np.abs(aux[i].astype(int) - expected).max() <= 1


def test_predict_oof_without_tta_reproduces_the_training_oof(trained: Config, capsys):
    assert main(["predict", *_cli(trained, "--oof", "--tta", "none", "--no-progress")]) == 0
    assert "tune.oof_tta=none" in capsys.readouterr().out
    d = trained.fold_dir(0)
    oof, ids = read_oof(d)
    again = np.load(d / "oof_tta-none.npy")
    assert again.shape == oof.shape
    assert np.abs(again.astype(int) - oof).max() <= 1
    assert (d / "oof_tta-none_ids.csv").read_text().split() == ["image_id", *ids]
    assert np.abs(np.load(d / "oof_tta-none_aux.npy").astype(int) - np.load(d / "oof_aux.npy")).max() <= 1


def test_predict_oof_hflip_averages_the_deaugmented_views(trained: Config):
    assert main(["predict", *_cli(trained, "--oof", "--tta", "hflip", "--no-progress")]) == 0
    d = trained.fold_dir(0)
    oof = np.load(d / "oof_tta-hflip.npy")
    ids = val_ids(trained, 0)
    model, ccfg = load_checkpoint(d / "best.pt")
    x = model_input(SegDataset(trained, [ids[0]], train=False)[0]["image"][None], trained.data.normalize)
    p, _ = predict_proba(model, x, "multilabel")
    pf, _ = predict_proba(model, x.flip(-1), "multilabel")
    expected = quantize(restore((p + pf.flip(-1)) / 2, (128, 256), trained)[0])
    assert np.abs(oof[0].astype(int) - expected.astype(int)).max() <= 1
    unflipped = quantize(restore(pf, (128, 256), trained)[0])  # forgetting to de-augment is caught
    assert np.abs(oof[0].astype(int) - unflipped.astype(int)).max() > 5


def test_ema_run_predicts_with_the_validated_ema_weights(demo_root, tmp_path):
    from kseg.models import validated_state_dict

    cfg = tiny_config(demo_root, tmp_path, "model.aux_head=true", "train.device=cpu", "train.ema=true")
    train_fold(cfg, 0)
    d = cfg.fold_dir(0)
    last = torch.load(d / "last.pt", weights_only=True)
    ema, source = validated_state_dict(last, d / "last.pt")
    assert source == "ema" and ema.keys() == last["state_dict"].keys()
    best = torch.load(d / "best.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(best[k], v) for k, v in ema.items())  # best.pt holds the validated (EMA) weights
    assert not all(torch.equal(last["state_dict"][k], v) for k, v in ema.items())  # the probe: raw != EMA
    assert all(torch.equal(load_checkpoint(d / "last.pt")[0].state_dict()[k], v) for k, v in ema.items())

    # --oof --weights last.pt re-predicts the OOF that validation scored (EMA), not the raw weights' one
    assert main(["predict", *_cli(cfg, "--oof", "--weights", "last.pt", "--tta", "none", "--no-progress")]) == 0
    oof, ids = read_oof(d)
    assert np.abs(np.load(d / "oof_tta-none.npy").astype(int) - oof).max() <= 1
    raw = build_model(cfg.replace(model=_no_weights(cfg)))
    raw.load_state_dict(last["state_dict"])
    x = model_input(SegDataset(cfg, ids[:1], train=False)[0]["image"][None], cfg.data.normalize)
    p, _ = predict_proba(raw.eval(), x, "multilabel")
    assert np.abs(quantize(restore(p, (128, 256), cfg)[0]).astype(int) - oof[0]).max() > 5


def test_tune_reads_the_selected_oof(trained: Config):
    main(["predict", *_cli(trained, "--oof", "--tta", "hflip", "--no-progress")])
    d = trained.fold_dir(0)
    ids = val_ids(trained, 0)
    for tta, name in (("", "oof.npy"), ("hflip", "oof_tta-hflip.npy")):
        cfg = _with_tune(trained, oof_tta=tta, thresholds=(0.5,), min_sizes=(0,))
        result = tune(cfg, progress=False)
        assert result.score_default == pytest.approx(oof_score(np.load(d / name), trained, ids), abs=1e-6)
    gated = _with_tune(trained, oof_tta="hflip", aux_gates=(0.0, 0.5))
    assert tune(gated, progress=False).grid.uses_aux
    with pytest.raises(FileNotFoundError, match="kseg predict --oof --tta vflip"):
        tune(_with_tune(trained, oof_tta="vflip"), progress=False)


def _with_tune(cfg: Config, **kw) -> Config:
    import dataclasses

    return cfg.replace(tune=dataclasses.replace(cfg.tune, **kw))


def test_fresh_training_removes_stale_tta_oof(demo_root, tmp_path):
    cfg = tiny_config(demo_root, tmp_path, "train.device=cpu")
    d = cfg.fold_dir(1)
    d.mkdir(parents=True)
    for name in oof_files("hflip"):
        (d / name).write_text("old weights")
    train_fold(cfg, 1)
    assert not any(d.glob("oof_tta-*")) and (d / "oof.npy").is_file()
    assert not (d / "oof_aux.npy").exists()  # no aux head, no aux OOF


def test_init_from_loads_the_previous_stage(trained: Config, tmp_path, caplog):
    template = str(trained.run_dir / "fold{fold}" / "best.pt")
    model = build_model(trained.replace(model=_no_weights(trained)))
    init_weights(model, template, 0)
    saved = torch.load(trained.fold_dir(0) / "best.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    with pytest.raises(FileNotFoundError, match="fold3/best.pt not found"):
        init_weights(model, template, 3)
    relative = (
        "{runs_dir}/"
        + str(trained.fold_dir(0).relative_to(trained.runs_dir)).replace("fold0", "fold{fold}")
        + "/best.pt"
    )
    assert init_weights(model, relative, 0, trained.runs_dir) == trained.fold_dir(0) / "best.pt"
    with pytest.raises(ValueError, match="not a path template"):
        init_weights(model, template.replace("{fold}", "{stage}"), 0)
    other = build_model(trained.replace(model=_no_weights(trained, aux_head=False)))
    with pytest.raises(ValueError, match="does not fit this model"):
        init_weights(other, template, 0)
    # a second stage trained from the first: starts from its weights (lovasz fine-tuning after BCE)
    stage2 = [
        "train",
        *_cli(
            trained,
            "--fold",
            "0",
            "name=demo-stage2",
            f"train.init_from={template}",
            "loss=[{name: lovasz}]",
            "optim.lr=1e-12",
            "sched.name=none",
        ),
    ]
    caplog.set_level("INFO")
    assert main(stage2) == 0
    assert "weights initialised from" in caplog.text
    after = torch.load(trained.run_dir.parent / "demo-stage2" / "fold0" / "best.pt", weights_only=True)["state_dict"]
    weights = [k for k in saved if "running" not in k and "num_batches" not in k]
    assert all(torch.allclose(after[k], saved[k], rtol=0, atol=1e-9) for k in weights)  # lr 1e-12: Adam steps ~lr


def _no_weights(cfg: Config, **kw):
    import dataclasses

    return dataclasses.replace(cfg.model, encoder_weights=None, **kw)


def test_postprocess_records_its_ensemble_and_predict_refuses_another(trained: Config, caplog):
    import json

    from kseg.infer.pipeline import PostprocessMismatchError, check_postprocess_ensemble
    from kseg.tune.report import write_outputs

    main(["predict", *_cli(trained, "--oof", "--tta", "hflip", "--no-progress")])
    cfg = _with_tune(trained, oof_tta="hflip", thresholds=(0.5,), min_sizes=(0,))
    path = write_outputs(cfg, tune(cfg, progress=False), plots=False)["postprocess"]
    record = json.loads(path.read_text())
    assert (record["runs"], record["folds"], record["oof_tta"]) == (["demo"], [0], "hflip")
    assert check_postprocess_ensemble(path, {"demo": [0]}, "hflip") == []
    with pytest.raises(PostprocessMismatchError, match=r"tta hflip -> d4.*--allow-postprocess-mismatch"):
        check_postprocess_ensemble(path, {"demo": [0]}, "d4")
    assert check_postprocess_ensemble(path, {"demo": [0]}, "d4", allow=True) == ["tta hflip -> d4"]
    assert "may not carry over" in caplog.text and "predicting with it anyway" in caplog.text
    plain = write_outputs(_with_tune(cfg, oof_tta=""), tune(_with_tune(cfg, oof_tta=""), progress=False), plots=False)
    assert json.loads(plain["postprocess"].read_text())["oof_tta"] == "none"  # training's OOF has no TTA
    assert check_postprocess_ensemble(plain["postprocess"], {"demo": [0]}, "none") == []
    with pytest.raises(PostprocessMismatchError, match="tta none -> hflip"):
        check_postprocess_ensemble(plain["postprocess"], {"demo": [0]}, "hflip")
