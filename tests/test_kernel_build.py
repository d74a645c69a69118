"""kseg kernel build: slug rules, names, metadata, dataset layout, wheels (offline), the generated script."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from kseg.cli import main
from kseg.config import load_config, save_config
from kseg.kernel import build as build_mod
from kseg.kernel.build import PLACEHOLDER_USER, build_kernel, size_table
from kseg.kernel.script import render_script
from kseg.kernel.slugs import SlugError, kaggle_username, kernel_names, slugify, validate_slug, validate_title
from kseg.kernel.wheels import WheelError, build_kseg_wheel, fetch_wheels, find_cached_wheel, pin_requirement
from kseg.layout import MANIFEST

from conftest import REPO

FAKE_CKPT = b"fold checkpoint bytes"  # build copies checkpoints without reading them


def _cfg(demo_root: Path, tmp_path: Path, *extra: str):
    return load_config(
        REPO / "configs" / "demo.yaml",
        [f"data.root={demo_root}", f"runs_dir={tmp_path / 'runs'}", f"kernel.dir={tmp_path / 'kernels'}", *extra],
    )


def _fake_runs(cfg, folds=(0, 1, 2), run: str | None = None) -> None:
    for k in folds:
        path = Path(cfg.runs_dir) / (run or cfg.name) / f"fold{k}" / "best.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(FAKE_CKPT + bytes([k]))
    if run:  # another experiment's saved config: the run-time estimate builds its model
        save_config(cfg.replace(name=run), Path(cfg.runs_dir) / run / "config.yaml")


@pytest.fixture()
def no_user(monkeypatch, tmp_path):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle-config"))


# --------------------------------------------------------------------------- slugs and names


@pytest.mark.parametrize("slug", ["kseg-demo", "abc123", "a1-b2-c3", "x" * 50])
def test_valid_dataset_slugs(slug):
    assert validate_slug(slug) == slug


@pytest.mark.parametrize(
    "slug, rule",
    [
        ("Kseg-Demo", "lowercase letters, digits and single hyphens"),
        ("kseg_demo", "lowercase letters, digits and single hyphens"),
        ("kseg--demo", "single hyphens"),
        ("-ksegdemo", "not at either end"),
        ("ksegdemo-", "not at either end"),
        ("kseg", "6-50 characters long (it has 4)"),
        ("x" * 51, "6-50 characters long (it has 51)"),
        ("", "lowercase letters"),
    ],
)
def test_bad_dataset_slugs_name_the_rule(slug, rule):
    with pytest.raises(SlugError, match="dataset slug") as e:
        validate_slug(slug)
    assert rule in str(e.value)


def test_bad_slug_suggests_a_fix():
    with pytest.raises(SlugError, match="try 'kseg-demo-v2'"):
        validate_slug("Kseg_Demo V2")


def test_title_lengths():
    assert validate_title("abcdef") == "abcdef"
    with pytest.raises(SlugError, match="6-50 characters long \\(it has 5\\)"):
        validate_title("abcde")
    with pytest.raises(SlugError, match="kernel title.*5-50"):
        validate_title("abcd", "kernel title", (5, 50))


def test_slugify():
    assert slugify("TGS salt / UNet r34") == "tgs-salt-unet-r34"
    assert slugify("kseg-tgs-salt/unet-r34") == "kseg-tgs-salt-unet-r34"


def test_kernel_names_defaults_from_experiment(demo_root, tmp_path):
    cfg = _cfg(demo_root, tmp_path).replace(name="tgs-salt/unet-r34")
    n = kernel_names(cfg, "alice")
    assert (n.dataset_slug, n.kernel_slug) == ("kseg-tgs-salt-unet-r34", "kseg-tgs-salt-unet-r34-infer")
    assert (n.dataset_title, n.kernel_title) == ("kseg-tgs-salt-unet-r34", "kseg-tgs-salt-unet-r34-infer")
    assert (n.dataset_id, n.kernel_id) == ("alice/kseg-tgs-salt-unet-r34", "alice/kseg-tgs-salt-unet-r34-infer")


def test_kernel_names_from_config(demo_root, tmp_path):
    cfg = _cfg(
        demo_root,
        tmp_path,
        "kernel.slug=steel-weights",
        "kernel.title=Steel UNet Inference",
        "kernel.dataset_title=Steel weights v1",
    )
    n = kernel_names(cfg, "bob")
    assert n.kernel_slug == "steel-unet-inference"  # Kaggle derives the kernel slug from the title
    assert (n.dataset_id, n.dataset_title, n.kernel_title) == (
        "bob/steel-weights",
        "Steel weights v1",
        "Steel UNet Inference",
    )


def test_kernel_title_must_resolve_to_kernel_slug(demo_root, tmp_path):
    cfg = _cfg(demo_root, tmp_path, "kernel.kernel_slug=abc-infer", "kernel.title=Other Title")
    with pytest.raises(SlugError, match="resolves to slug 'other-title'"):
        kernel_names(cfg, "bob")


def test_bad_username(demo_root, tmp_path):
    with pytest.raises(SlugError, match="username 'a b'"):
        kernel_names(_cfg(demo_root, tmp_path), "a b")


def test_username_from_env_then_kaggle_json(monkeypatch, tmp_path):
    cfg_dir = tmp_path / "kcfg"
    cfg_dir.mkdir()
    (cfg_dir / "kaggle.json").write_text(json.dumps({"username": "from-json", "key": "x"}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(cfg_dir))
    monkeypatch.setenv("KAGGLE_USERNAME", "from-env")
    assert kaggle_username() == "from-env"
    monkeypatch.delenv("KAGGLE_USERNAME")
    assert kaggle_username() == "from-json"
    (cfg_dir / "kaggle.json").unlink()
    assert kaggle_username() is None


# --------------------------------------------------------------------------- wheels


def test_pin_requirement():
    import importlib.metadata

    assert pin_requirement("pyyaml") == f"pyyaml=={importlib.metadata.version('pyyaml')}"
    assert pin_requirement("timm>=0.9") == "timm>=0.9"
    assert pin_requirement("surely-not-installed-pkg-xyz") == "surely-not-installed-pkg-xyz"
    with pytest.raises(WheelError, match="not a pip requirement"):
        pin_requirement("bad spec !!")


def test_wheel_cache_hit_needs_no_pip(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "segmentation_models_pytorch-0.6.0-py3-none-any.whl").write_bytes(b"wheel")
    (cache / "segmentation_models_pytorch-0.5.0-py3-none-any.whl").write_bytes(b"old")
    assert find_cached_wheel(cache, "segmentation-models-pytorch==0.6.0").name.startswith(
        "segmentation_models_pytorch-0.6.0"
    )
    assert find_cached_wheel(cache, "segmentation-models-pytorch==0.7.0") is None
    assert find_cached_wheel(cache, "segmentation-models-pytorch>=0.6") is None  # only exact pins hit

    def no_pip(*a, **k):
        raise AssertionError("pip must not run on a cache hit")

    monkeypatch.setattr("kseg.kernel.wheels._run_pip", no_pip)
    got = fetch_wheels(["segmentation-models-pytorch==0.6.0"], tmp_path / "out", cache)
    assert [p.name for p in got] == ["segmentation_models_pytorch-0.6.0-py3-none-any.whl"]
    assert got[0].read_bytes() == b"wheel"


def test_wheel_download_then_cache(tmp_path):
    """pip download (from a local folder: offline) fills the cache; the second fetch reuses it."""
    local = tmp_path / "local"
    built = build_kseg_wheel(local)
    cache = tmp_path / "cache"
    spec = "kseg==0.1.0"
    got = fetch_wheels([spec], tmp_path / "a", cache, pip_args=("--no-index", "--find-links", str(local)))
    assert got[0].name == built.name and (cache / built.name).is_file()
    built.unlink()  # the source is gone: only the cache can serve now
    again = fetch_wheels([spec], tmp_path / "b", cache, pip_args=("--no-index", "--find-links", str(local)))
    assert again[0].read_bytes() == got[0].read_bytes()
    with pytest.raises(WheelError, match="downloading the wheel of 'kseg==9.9.9'"):
        fetch_wheels(["kseg==9.9.9"], tmp_path / "c", cache, pip_args=("--no-index", "--find-links", str(local)))


# --------------------------------------------------------------------------- build


def test_build_layout_and_metadata(demo_root, tmp_path, no_user):
    cfg = _cfg(demo_root, tmp_path)
    _fake_runs(cfg)
    pp = {"classes": [{"name": c, "params": {"threshold": 0.4}} for c in cfg.competition.classes]}
    (Path(cfg.runs_dir) / "demo" / "postprocess.json").write_text(json.dumps(pp))
    (Path(cfg.runs_dir) / "demo" / "config.yaml").write_text("name: demo\n")
    result = build_kernel(cfg, wheels=(), tta="hflip")

    ds, kd = tmp_path / "kernels" / "demo" / "dataset", tmp_path / "kernels" / "demo" / "kernel"
    assert result.dataset_dir == ds and result.kernel_dir == kd
    rel = sorted(p.relative_to(ds).as_posix() for p in ds.rglob("*") if p.is_file())
    wheel = [r for r in rel if r.startswith("wheels/")]
    assert rel == sorted(
        [
            "competition.yaml",
            "config.yaml",
            "dataset-metadata.json",
            MANIFEST,
            "runs/demo/config.yaml",
            "runs/demo/fold0/best.pt",
            "runs/demo/fold1/best.pt",
            "runs/demo/fold2/best.pt",
            "runs/demo/postprocess.json",
            *wheel,
        ]
    )
    assert len(wheel) == 1 and wheel[0].startswith("wheels/kseg-0.1.0-") and wheel[0].endswith(".whl")
    assert (ds / "runs/demo/fold2/best.pt").read_bytes() == FAKE_CKPT + b"\x02"
    assert json.loads((ds / "runs/demo/postprocess.json").read_text()) == pp
    with zipfile.ZipFile(ds / wheel[0]) as z:
        names = set(z.namelist())
    assert {"kseg/cli.py", "kseg/kernel/script_template.py", "kseg/commands/predict.py"} <= names

    shipped = load_config(ds / "config.yaml")  # the kernel loads it like any experiment
    assert shipped.name == "demo" and shipped.competition == cfg.competition and shipped.model == cfg.model

    assert json.loads((ds / "dataset-metadata.json").read_text()) == {
        "title": "kseg-demo",
        "id": f"{PLACEHOLDER_USER}/kseg-demo",
        "licenses": [{"name": "CC0-1.0"}],
        "description": json.loads((ds / "dataset-metadata.json").read_text())["description"],
    }
    meta = json.loads((kd / "kernel-metadata.json").read_text())
    assert meta == {
        "id": f"{PLACEHOLDER_USER}/kseg-demo-infer",
        "title": "kseg-demo-infer",
        "code_file": "kseg-demo-infer.py",
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": [f"{PLACEHOLDER_USER}/kseg-demo"],
        "competition_sources": ["demo"],
        "kernel_sources": [],
        "model_sources": [],
    }
    manifest = json.loads((ds / MANIFEST).read_text())
    assert manifest["experiment"] == "demo" and manifest["runs"] == {"demo": [0, 1, 2]}
    assert manifest["user_resolved"] is False and manifest["predict_args"] == ["--tta", "hflip"]
    listed = [r for r in rel if r not in (MANIFEST, "dataset-metadata.json")]
    assert manifest["files"] == {r: (ds / r).stat().st_size for r in listed}
    assert not any("postprocess" in w for w in result.warnings)
    assert any(PLACEHOLDER_USER in w for w in result.warnings)
    assert result.total_bytes == sum(s for _, s in result.files)
    assert "dataset-metadata.json" not in dict(result.files)  # the CLI does not upload it


def test_generated_script_settings_and_no_network_imports(demo_root, tmp_path, no_user):
    cfg = _cfg(demo_root, tmp_path)
    _fake_runs(cfg, folds=(0, 1))
    _fake_runs(cfg, folds=(0,), run="other-exp")
    result = build_kernel(cfg, runs=["demo", "other-exp"], folds=(0,), wheels=())
    source = result.script.read_text()
    ns: dict = {"__name__": "kseg_kernel_under_test"}
    exec(compile(source, str(result.script), "exec"), ns)  # defines, does not run (not __main__)
    assert ns["SETTINGS"] == {
        "experiment": "demo",
        "runs": ["demo", "other-exp"],
        "dataset_slug": "kseg-demo",
        "competition_dirs": ["demo"],
        "sample_submission": "sample_submission.csv",
        "test_images": "test_images",
        "config": "config.yaml",
        "predict_args": ["--folds", "0"],
        "overrides": [],
    }
    assert "--no-index" in source and "KSEG_KAGGLE_ROOT" in source and "/kaggle" in source
    # the script is stdlib-only before the wheels are installed: no third-party top-level imports
    tops = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
    stdlib = {"importlib", "itertools", "json", "os", "subprocess", "sys", "tempfile", "time", "zipfile", "pathlib"}
    assert tops <= stdlib
    shipped = sorted(p.relative_to(result.dataset_dir).as_posix() for p in result.dataset_dir.rglob("best.pt"))
    assert shipped == ["runs/demo/fold0/best.pt", "runs/other-exp/fold0/best.pt"]  # only --folds 0
    assert any("postprocess.json not found" in w for w in result.warnings)


def test_render_script_rejects_missing_settings():
    with pytest.raises(ValueError, match="missing .*runs"):
        render_script({"experiment": "x"})


def test_missing_checkpoint_fails_naming_it(demo_root, tmp_path, no_user):
    cfg = _cfg(demo_root, tmp_path)
    _fake_runs(cfg, folds=(0,))
    with pytest.raises(FileNotFoundError, match="fold1/best.pt"):
        build_kernel(cfg, folds=(0, 1), wheels=())
    assert not (tmp_path / "kernels" / "demo" / "dataset").exists()  # nothing half-built left behind


def test_build_refuses_postprocess_tuned_on_another_ensemble(demo_root, tmp_path, no_user):
    from kseg.infer.pipeline import PostprocessMismatchError

    cfg = _cfg(demo_root, tmp_path)
    _fake_runs(cfg)
    pp = {"runs": ["demo"], "folds": [0, 1, 2], "oof_tta": "none", "classes": []}
    (Path(cfg.runs_dir) / "demo" / "postprocess.json").write_text(json.dumps(pp))
    with pytest.raises(PostprocessMismatchError, match=r"tta none -> hflip.*--allow-postprocess-mismatch"):
        build_kernel(cfg, tta="hflip", wheels=())
    with pytest.raises(PostprocessMismatchError, match=r"folds of demo \[0, 1, 2\] -> \[0\]"):
        build_kernel(cfg, folds=(0,), wheels=())  # predict.tta none, but one fold of three
    assert not (tmp_path / "kernels" / "demo" / "dataset").exists()
    assert "--allow-postprocess-mismatch" not in build_kernel(cfg, wheels=()).script.read_text()  # the tuned one
    allowed = build_kernel(cfg, tta="hflip", wheels=(), allow_postprocess_mismatch=True)
    ns: dict = {"__name__": "kseg_kernel_under_test"}
    exec(compile(allowed.script.read_text(), str(allowed.script), "exec"), ns)
    assert ns["SETTINGS"]["predict_args"] == ["--tta", "hflip", "--allow-postprocess-mismatch"]  # Kaggle allows it too


def test_bad_slug_fails_before_writing(demo_root, tmp_path, no_user):
    cfg = _cfg(demo_root, tmp_path, "kernel.slug=Bad_Slug")
    _fake_runs(cfg)
    with pytest.raises(SlugError, match="kernel.slug"):
        build_kernel(cfg, wheels=())
    assert not (tmp_path / "kernels").exists()


def test_rebuild_replaces_outputs_keeps_push_record(demo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "carol")
    cfg = _cfg(demo_root, tmp_path)
    _fake_runs(cfg)
    build_kernel(cfg, wheels=())
    root = tmp_path / "kernels" / "demo"
    (root / "dataset" / "stale.txt").write_text("old")
    (root / "push.json").write_text("{}")
    result = build_kernel(cfg, wheels=())
    assert not (root / "dataset" / "stale.txt").exists() and (root / "push.json").read_text() == "{}"
    assert result.names.dataset_id == "carol/kseg-demo" and not [p for p in root.iterdir() if p.name.startswith(".")]
    assert json.loads((root / "dataset" / MANIFEST).read_text())["user_resolved"] is True


def test_size_table_and_limit_warning(demo_root, tmp_path, no_user, monkeypatch):
    table = size_table([("a.txt", 500), ("runs/x/best.pt", 1_500_000)])
    lines = table.splitlines()
    assert lines[1].split() == ["a.txt", "500", "B"]
    assert lines[2].split() == ["runs/x/best.pt", "1.5", "MB"]
    assert lines[3].split() == ["total", "1.5", "MB", "(2", "files)"]
    cfg = _cfg(demo_root, tmp_path)
    _fake_runs(cfg)
    monkeypatch.setattr(build_mod, "DATASET_MAX_BYTES", 1000)
    result = build_kernel(cfg, wheels=())
    assert any("over Kaggle's" in w and "per-dataset limit" in w for w in result.warnings)


def test_cli_build(demo_root, tmp_path, no_user, capsys):
    cfg = _cfg(demo_root, tmp_path)
    _fake_runs(cfg)
    ov = [f"data.root={demo_root}", f"runs_dir={tmp_path / 'runs'}", f"kernel.dir={tmp_path / 'kernels'}"]
    assert (
        main(
            [
                "kernel",
                "build",
                "-c",
                str(REPO / "configs" / "demo.yaml"),
                "--no-wheels",
                "--folds",
                "0,2",
                "--tta",
                "vflip",
                *ov,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "runs/demo/fold0/best.pt" in out and "runs/demo/fold2/best.pt" in out and "fold1" not in out
    assert "kseg-demo-infer.py" in out and "total" in out
    assert main(["kernel", "build", "-c", str(REPO / "configs" / "demo.yaml"), "--tta", "sideways", *ov]) == 1
    assert (
        main(["kernel", "build", "-c", str(REPO / "configs" / "demo.yaml"), "--no-wheels", *ov, "kernel.slug=x"]) == 1
    )
    assert os.path.isdir(tmp_path / "kernels" / "demo" / "dataset")
