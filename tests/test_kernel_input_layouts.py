"""Kernel build, budget and rehearsal on the input layouts beyond one image file per id in one folder.

UW-Madison (``competition.image_path`` ``{patient}/{case}/scans/slice_{slice}_*.png`` in nested folders,
``competition.volume`` 2.5D stacks, 16-bit PNGs of varying sizes; its public ``sample_submission.csv`` is
empty: Kaggle fills it, and the test folder, only when it scores the kernel) and Identify Contrails
(``competition.arrays``: each id a record folder of ``band_XX.npy`` arrays).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from kseg.competition import list_test_ids, read_csv
from kseg.config import load_config
from kseg.demo.registry import MINIATURES
from kseg.kernel.budget import _io_seconds, check_budget, estimate_run_time, io_sample
from kseg.kernel.build import build_kernel
from kseg.kernel.rehearse import rehearse

from conftest import REPO

UW_FILE = re.compile(r"case\d+/case\d+_day\d+/scans/slice_(\d{4})_(\d+)_(\d+)_\d\.\d\d_\d\.\d\d\.png")


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small uwmgi and contrails miniatures, and a copy of uwmgi whose sample submission is empty."""
    out = {}
    for name in ("uwmgi", "contrails"):
        mini = MINIATURES.get(name)
        out[name] = mini.write(tmp_path_factory.mktemp(name), seed=0, **mini.small)
    empty = tmp_path_factory.mktemp("uwmgi-empty") / "data"
    shutil.copytree(out["uwmgi"], empty)
    header = (out["uwmgi"] / "sample_submission.csv").read_text().splitlines()[0]
    (empty / "sample_submission.csv").write_text(header + "\n")  # as the public UW-Madison file: header only
    out["uwmgi-empty"] = empty
    return out


def _cfg(name: str, root: Path, tmp_path: Path, *extra: str):
    mini = MINIATURES.get(name.removesuffix("-empty"))
    return load_config(
        REPO / mini.config,
        [
            *mini.fast,
            f"data.root={root}",
            f"runs_dir={tmp_path / 'runs'}",
            f"kernel.dir={tmp_path / 'kernels'}",
            f"data.folds_csv={tmp_path / 'folds.csv'}",
            *extra,
        ],
    )


# --------------------------------------------------------------------------- the per-image read of the budget


def test_budget_reads_nested_image_path_files_in_sample_order(roots, tmp_path) -> None:
    cfg = _cfg("uwmgi", roots["uwmgi"], tmp_path)
    reader = io_sample(cfg)
    assert reader is not None and reader.ids == list_test_ids(cfg.competition, cfg.data_root)[:8]
    test = roots["uwmgi"] / "test"
    for image_id, path in zip(reader.ids, reader.paths, strict=True):
        m = UW_FILE.fullmatch(path.relative_to(test).as_posix())  # nested 3 folders down, found by the template
        assert m and path.is_file() and image_id.endswith(f"_slice_{m.group(1)}")
    _, width, height = UW_FILE.fullmatch(reader.paths[0].relative_to(test).as_posix()).groups()
    assert reader(0).shape == (int(height), int(width), 3)  # the 2.5D stack at the slice's own size
    assert _io_seconds(cfg) > 0  # was 0: `*.png` in test/ saw none of the nested files


def test_budget_reads_array_record_folders(roots, tmp_path) -> None:
    cfg = _cfg("contrails", roots["contrails"], tmp_path)
    reader = io_sample(cfg)
    assert reader is not None and reader.ids == list_test_ids(cfg.competition, cfg.data_root)
    assert reader.paths == [roots["contrails"] / "test" / i for i in reader.ids]
    assert all(p.is_dir() and (p / "band_11.npy").is_file() for p in reader.paths)
    assert reader(0).shape[2] == 3  # ash RGB of bands 11, 14, 15
    assert _io_seconds(cfg) > 0  # was an error: the record folders were read as image files


def test_empty_sample_times_training_inputs_and_warns_of_no_test_images(roots, tmp_path) -> None:
    cfg = _cfg("uwmgi-empty", roots["uwmgi-empty"], tmp_path)
    assert list_test_ids(cfg.competition, cfg.data_root) == []
    reader = io_sample(cfg, limit=3)
    assert reader is not None and len(reader.ids) == 3
    assert all(p.is_file() and p.relative_to(roots["uwmgi-empty"]).parts[0] == "train" for p in reader.paths)
    e = estimate_run_time(cfg, {}, "none")
    assert e.images == 0 and e.io_s > 0
    (warning,) = check_budget(e, force=False)
    assert "0 test images" in warning and "kernel.test_images" in warning
    sized = estimate_run_time(_cfg("uwmgi-empty", roots["uwmgi-empty"], tmp_path, "kernel.test_images=500"), {}, "none")
    assert sized.images == 500 and check_budget(sized, force=False) == []


# --------------------------------------------------------------------------- end to end


def _built(cfg, monkeypatch):
    """Random-weight checkpoints of folds 0 and 1, then the kernel (kseg's wheel only: the venv sees the host's)."""
    from kseg.models import build_model, save_checkpoint

    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    for k in (0, 1):
        path = cfg.fold_dir(k) / "best.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, build_model(cfg), cfg)
    return build_kernel(cfg, wheels=())


def _rows(path: Path, cfg) -> set[tuple[str, ...]]:
    sub = cfg.competition.submission
    cols = [sub.id_column] + ([sub.class_column] if sub.format == "long" else [])
    return set(read_csv(path)[cols].itertuples(index=False, name=None))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["uwmgi", "contrails"])
def test_kernel_rehearses_offline_on_the_layout(name, roots, tmp_path, monkeypatch) -> None:
    """The real generated script: kseg installed from its wheel, network cut, predict + validate on the layout."""
    cfg = _cfg(name, roots[name], tmp_path, "kernel.smoke_images=8")
    _built(cfg, monkeypatch)
    r = rehearse(cfg, isolation="auto", timeout=300, echo=False)
    text = r.log_path.read_text()
    assert r.passed, f"{r.problems}\n{text[-3000:]}"
    assert r.warnings == [] and "kseg predict failed" not in text
    sample = roots[name] / "sample_submission.csv"
    assert len(read_csv(r.submission)) == len(read_csv(sample)) > 0
    assert _rows(r.submission, cfg) == _rows(sample, cfg)  # every (id[, class]) row of the sample, once
    if name != "uwmgi":
        return
    # the public UW-Madison sample is empty: the kernel writes a valid header-only csv, the rehearsal says so
    empty = rehearse(_cfg("uwmgi-empty", roots["uwmgi-empty"], tmp_path), isolation="auto", timeout=300, echo=False)
    assert empty.passed, empty.problems
    assert pd.read_csv(empty.submission).columns.tolist() == ["id", "class", "predicted"]
    assert len(read_csv(empty.submission)) == 0
    (warning,) = empty.warnings
    assert "predicted no test images" in warning and "sample_submission.csv has no rows" in warning
    assert "smoke test predicted training images instead: 24 rows" in warning  # kernel.smoke_images=8 x 3
    smoke = read_csv(tmp_path / "kernels/uwmgi/unet-r34-25d/rehearsal/smoke_submission.csv")
    first = list(dict.fromkeys(read_csv(roots["uwmgi"] / "train.csv")["id"]))[:8]  # train.csv order
    assert smoke["id"].tolist() == [i for i in first for _ in range(3)]
    assert smoke["class"].tolist() == ["large_bowel", "small_bowel", "stomach"] * 8
    assert (smoke["predicted"] != "").any()  # random weights: some pixels over the threshold
