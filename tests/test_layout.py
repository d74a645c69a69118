"""kseg.layout: every run / fold / kernel-build path by hand, the fold-folder regex, and the README's contract."""

from __future__ import annotations

import ast
import re
from datetime import datetime
from pathlib import Path

import pytest

from kseg import layout as L
from kseg.config import load_config, save_config
from kseg.layout import KernelLayout, RunLayout, fold_dir_name, fold_dirs, oof_files, oof_paths, parse_fold_dir

from conftest import REPO


def test_run_layout_paths() -> None:
    run = RunLayout(Path("runs"), "tgs-salt/unet-r34")
    assert run.root == Path("runs/tgs-salt/unet-r34")
    assert run.config == Path("runs/tgs-salt/unet-r34/config.yaml")
    assert run.postprocess == Path("runs/tgs-salt/unet-r34/postprocess.json")
    assert run.tune_csv == Path("runs/tgs-salt/unet-r34/tune.csv")
    assert run.ensemble == Path("runs/tgs-salt/unet-r34/ensemble.json")
    assert L.report_path("runs") == Path("runs/report.html")
    assert run.tune_plot("defect 1/a") == Path("runs/tgs-salt/unet-r34/tune_defect_1_a.png")
    assert run.tune_plot("") == Path("runs/tgs-salt/unet-r34/tune_class.png")
    assert run.fold(3) == Path("runs/tgs-salt/unet-r34/fold3")
    assert run.best(3) == Path("runs/tgs-salt/unet-r34/fold3/best.pt")
    assert run.last(0) == Path("runs/tgs-salt/unet-r34/fold0/last.pt")
    assert run.metrics(12) == Path("runs/tgs-salt/unet-r34/fold12/metrics.csv")
    assert run.checkpoint(1) == Path("runs/tgs-salt/unet-r34/fold1/best.pt")
    assert run.swa(1) == Path("runs/tgs-salt/unet-r34/fold1/swa.pt")
    assert run.epoch_checkpoint(1, 7) == Path("runs/tgs-salt/unet-r34/fold1/epochs/epoch007.pt")
    assert run.epochs_dir(1) == run.epoch_checkpoint(1, 7).parent
    assert run.checkpoint(1, "last.pt") == Path("runs/tgs-salt/unet-r34/fold1/last.pt")
    fold2 = Path("runs/tgs-salt/unet-r34/fold2")
    assert run.oof(2) == (fold2 / "oof.npy", fold2 / "oof_ids.csv", fold2 / "oof_aux.npy")
    assert run.oof(2, "hflip").ids == Path("runs/tgs-salt/unet-r34/fold2/oof_tta-hflip_ids.csv")
    assert RunLayout("/abs/runs", "e").runs_dir == Path("/abs/runs")  # str accepted, stored as Path


def test_oof_file_names_of_training_and_of_a_tta_repredict() -> None:
    assert oof_files() == oof_files("") == ("oof.npy", "oof_ids.csv", "oof_aux.npy")
    assert oof_files("hflip") == ("oof_tta-hflip.npy", "oof_tta-hflip_ids.csv", "oof_tta-hflip_aux.npy")
    assert oof_files("d4") == ("oof_tta-d4.npy", "oof_tta-d4_ids.csv", "oof_tta-d4_aux.npy")
    assert oof_files("d4").aux == "oof_tta-d4_aux.npy"
    assert oof_paths("x/fold0", "hflip").probs == Path("x/fold0/oof_tta-hflip.npy")
    assert all(n.startswith(L.TTA_OOF_PREFIX) for n in oof_files("hflip"))


@pytest.mark.parametrize("k", [0, 1, 9, 10, 123])
def test_fold_dir_round_trip(k: int) -> None:
    assert fold_dir_name(k) == f"fold{k}"
    assert parse_fold_dir(fold_dir_name(k)) == k


@pytest.mark.parametrize("name", ["fold", "fold-1", "fold1a", "Fold1", "xfold1", "fold1.bak", "fold 1", "fold1/"])
def test_fold_dir_regex_rejects(name: str) -> None:
    assert parse_fold_dir(name) is None


def test_fold_dirs_on_disk(tmp_path: Path) -> None:
    for name in ("fold10", "fold2", "fold0", "fold1.bak", "wandb"):
        (tmp_path / name).mkdir()
    (tmp_path / "fold3").write_text("a file, not a fold folder")
    assert fold_dirs(tmp_path) == [(0, tmp_path / "fold0"), (2, tmp_path / "fold2"), (10, tmp_path / "fold10")]
    assert RunLayout(tmp_path.parent, tmp_path.name).folds() == fold_dirs(tmp_path)
    assert fold_dirs(tmp_path / "missing") == []


def test_submission_path() -> None:
    when = datetime(2024, 5, 6, 7, 8, 9)
    assert L.submission_path("tgs-salt/unet-r34", when) == Path("submissions/tgs-salt-unet-r34-20240506-070809.csv")
    assert L.submission_path("demo", when) == Path("submissions/demo-20240506-070809.csv")
    assert L.flat_name("a/b/c") == "a-b-c"


def test_kernel_layout_paths() -> None:
    k = KernelLayout.of("kernels", "tgs-salt/unet-r34")
    root = Path("kernels/tgs-salt/unet-r34")
    assert k.root == root
    assert k.dataset == root / "dataset" and k.kernel == root / "kernel"
    assert k.manifest == root / "dataset/kseg-manifest.json"
    assert k.dataset_metadata == root / "dataset/dataset-metadata.json"
    assert k.kernel_metadata == root / "kernel/kernel-metadata.json"
    assert k.config == root / "dataset/config.yaml"
    assert k.competition == root / "dataset/competition.yaml"
    assert k.wheels == root / "dataset/wheels"
    assert k.runs == root / "dataset/runs"
    assert k.run("a/b").best(2) == root / "dataset/runs/a/b/fold2/best.pt"
    assert k.run("a/b").postprocess == root / "dataset/runs/a/b/postprocess.json"
    assert k.rehearsal_log == root / "rehearsal/rehearsal.log"
    assert k.rehearsal_record == root / "rehearsal/rehearsal.json"
    assert k.rehearsal_submission == root / "rehearsal/submission.csv"
    assert k.rehearsal_smoke == root / "rehearsal/smoke_submission.csv"
    assert k.output(3) == root / "output/v3"
    assert k.output(None) == root / "output/vlatest"
    assert k.push_record == root / "push.json"
    stage = k.staging(42)
    assert stage.root == root / ".build-42"
    assert stage.manifest == root / ".build-42/dataset/kseg-manifest.json"


def test_config_delegates_to_layout(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs" / "demo.yaml", [f"runs_dir={tmp_path / 'r'}", f"kernel.dir={tmp_path / 'k'}"])
    assert cfg.layout == RunLayout(tmp_path / "r", cfg.name)
    assert cfg.run_dir == tmp_path / "r" / cfg.name
    assert cfg.fold_dir(4) == tmp_path / "r" / cfg.name / "fold4"
    assert cfg.kernel_layout.root == tmp_path / "k" / cfg.name
    assert save_config(cfg) == tmp_path / "r" / cfg.name / "config.yaml"
    default = load_config(REPO / "configs" / "demo.yaml")
    assert (default.runs_dir, default.kernel.dir) == ("runs", "kernels")


def _code_block_after(text: str, heading: str) -> list[str]:
    start = text.index(heading)
    block = text[text.index("```\n", start) + 4 :]
    return block[: block.index("```")].splitlines()


def test_readme_artefact_contract_lists_the_layout_names() -> None:
    """The README's ``runs/<exp>/`` tree names exactly the files kseg.layout owns, in this order."""
    lines = _code_block_after((REPO / "README.md").read_text(), "## Training artefacts")
    names = [line.split()[0] for line in lines if line.strip() and len(line) - len(line.lstrip()) < 10]
    assert names == [
        f"{L.RUNS_DIR}/<exp>/",
        L.CONFIG,
        L.POSTPROCESS,
        L.ENSEMBLE_FILE,
        L.TUNE_CSV,
        "tune_<class>.png",
        "fold<K>/",
        L.BEST,
        L.LAST,
        L.METRICS_CSV,
        L.SWA_CKPT,
        L.EPOCHS_DIR + "/",
        L.OOF_FILE,
        L.OOF_IDS_FILE,
        L.OOF_AUX_FILE,
        oof_files("<TTA>").probs,
        "wandb/",  # wandb's own folder (wandb.init(dir=run_dir))
    ]
    run = RunLayout(Path("r"), "e")
    assert run.tune_plot("x").name == "tune_<class>.png".replace("<class>", "x")
    assert parse_fold_dir("fold<K>".replace("<K>", "7")) == 7
    tta_line = next(line for line in lines if line.strip().startswith(oof_files("<TTA>").probs))
    for name in oof_files("<TTA>")[1:]:
        assert name.removeprefix(f"{L.TTA_OOF_PREFIX}<TTA>") in tta_line


def _expand(cell: str) -> list[str]:
    """Backticked paths of a README table cell: ``a/{x,y}`` -> a/x, a/y; a bare ``name`` after ``dir/f``: dir/name."""
    out: list[str] = []
    for token in re.findall(r"`([^`]+)`", cell):
        m = re.fullmatch(r"(.*)\{(.*)\}", token)
        paths = [m.group(1) + part for part in m.group(2).split(",")] if m else [token]
        if "/" not in token and out:
            paths = [out[-1].rsplit("/", 1)[0] + "/" + p for p in paths]
        out += paths
    return out


def test_readme_kernel_build_table_matches_the_layout() -> None:
    text = (REPO / "README.md").read_text()
    table = text[text.index("**build** writes") :].split("\n\n")[1]
    listed = {p for row in table.splitlines()[2:] for p in _expand(row.split("|")[1])}
    k = KernelLayout(Path("k"))

    def rel(p: Path) -> str:
        return p.relative_to(k.root).as_posix()

    run = k.run("<run>")
    assert listed == {
        rel(run.best(7)).replace(fold_dir_name(7), "fold<K>"),
        rel(run.config),
        rel(run.postprocess),
        rel(k.config),
        rel(k.competition),
        rel(k.wheels) + "/",
        rel(k.manifest),
        rel(k.dataset_metadata),
        rel(k.kernel_metadata),
        rel(k.kernel / "<kernel-slug>.py"),
    }


def test_kernel_script_template_repeats_the_layout_names() -> None:
    """The kernel script runs before kseg is installed, so it spells its few names out: they must agree."""
    tree = ast.parse((REPO / "src/kseg/kernel/script_template.py").read_text())
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assigned = {
        t.id: n.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    }
    assert ast.literal_eval(assigned["MANIFEST"]) == L.MANIFEST
    assert ast.literal_eval(assigned["SMOKE_CSV"]) == L.SMOKE_CSV
    assert {L.RUNS_DIR, L.WHEELS_DIR, L.KAGGLE_INPUT, L.KAGGLE_WORKING, L.SUBMISSION_CSV, L.FOLDS_CSV} <= strings
