"""The issue's "Also" paragraph: weights-only loading, no pickle of arbitrary objects, nothing fetched or
run from a path a competition csv supplies, and Kaggle credentials never inside a built kernel.

Checkpoints written by training load with ``torch.load(weights_only=True)``: tests/test_train.py::
test_kseg_train_writes_the_artefact_contract reads best.pt / last.pt that way, and every resume in
tests/reliability/test_kill_resume.py goes through it; a pickled foreign object is refused in
tests/reliability/test_checkpoint_faults.py::test_checkpoint_with_foreign_objects_is_refused.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import socket
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from kseg.kernel.build import build_kernel
from kseg.kernel.slugs import check_credentials_mode, kaggle_username

from _reliab import REPO, tiny_cfg

SRC = REPO / "src" / "kseg"


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_source_loads_only_weights_and_safe_yaml():
    """Every torch.load passes weights_only=True; no pickle, eval/exec, unsafe yaml or allow_pickle anywhere."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        rel = path.relative_to(REPO)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in ("pickle", "dill", "cloudpickle", "marshal", "shelve") for n in names):
                    offenders.append(f"{rel}:{node.lineno}: imports {names}")
        for call, name in _calls(tree):
            kw = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if name == "torch.load" and kw.get("weights_only") != "True":
                offenders.append(f"{rel}:{call.lineno}: torch.load without weights_only=True")
            if name in ("eval", "exec", "yaml.load", "yaml.unsafe_load", "os.system"):
                offenders.append(f"{rel}:{call.lineno}: {name}(...)")
            if kw.get("allow_pickle") == "True":
                offenders.append(f"{rel}:{call.lineno}: allow_pickle=True")
    assert offenders == []


def test_csv_ids_that_look_like_urls_or_paths_are_never_fetched(demo_root, tmp_path, monkeypatch):
    """An image id is a file name under the competition's image folder: a URL is a missing file, not a download."""
    import shutil

    from kseg.data.dataset import SegDataset, read_labels
    from kseg.data.images import ImageReadError

    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    connects: list[object] = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, addr: connects.append(addr))
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: connects.append(host) or [])
    cfg = tiny_cfg(root, tmp_path, "data.on_bad_image=error")
    labels = read_labels(cfg)
    for bad in ("http://203.0.113.1/x.jpg", "https://example.com/a.jpg", "/etc/passwd", "../train.csv"):
        with pytest.raises((ImageReadError, FileNotFoundError, ValueError)) as e:
            SegDataset(cfg, [bad], pd.concat([labels, pd.DataFrame({"image_id": [bad]})]).fillna(""))
        assert str(root / "train_images") in str(e.value)  # looked for under the data folder only
    assert connects == []


SECRET_ENV = "k3y-from-env-0123456789abcdef"
SECRET_FILE = "k3y-from-file-fedcba9876543210"
SECRET_WANDB = "wandb-secret-5555aaaa"


def _all_bytes(root: Path):
    """(name, bytes) of every file under ``root``, members of zip/wheel files included."""
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            yield str(p), data
            if zipfile.is_zipfile(p):
                with zipfile.ZipFile(p) as z:
                    for member in z.namelist():
                        yield f"{p}!{member}", z.read(member)


def test_built_kernel_holds_no_credential(demo_root, tmp_path, monkeypatch):
    conf = tmp_path / "kaggle-config"
    conf.mkdir()
    (conf / "kaggle.json").write_text(json.dumps({"username": "kseg-tester", "key": SECRET_FILE}))
    (conf / "kaggle.json").chmod(0o600)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(conf))
    monkeypatch.setenv("KAGGLE_KEY", SECRET_ENV)
    monkeypatch.setenv("WANDB_API_KEY", SECRET_WANDB)
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    cfg = tiny_cfg(demo_root, tmp_path, f"kernel.dir={tmp_path / 'kernels'}")
    for k in (0, 1):
        best = cfg.fold_dir(k) / "best.pt"
        best.parent.mkdir(parents=True, exist_ok=True)
        best.write_bytes(b"checkpoint bytes")
    result = build_kernel(cfg, wheels=())
    assert result.names.user == "kseg-tester"  # the username is used (public), the keys are not
    seen = 0
    for name, data in _all_bytes(result.root):
        seen += 1
        for secret in (SECRET_ENV, SECRET_FILE, SECRET_WANDB):
            assert secret.encode() not in data, f"{secret} leaked into {name}"
        assert not name.endswith("kaggle.json"), name
    assert seen > 5


def test_kaggle_json_permissions_warning(tmp_path, monkeypatch, caplog):
    conf = tmp_path / "kaggle"
    conf.mkdir()
    path = conf / "kaggle.json"
    path.write_text(json.dumps({"username": "someone", "key": "x"}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(conf))
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert kaggle_username() == "someone"
    assert f"{path} holds your Kaggle API key but has permissions 0o644: run `chmod 600 {path}`" in caplog.text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        assert kaggle_username() == "someone" and check_credentials_mode(path)
    assert "chmod" not in caplog.text
    assert os.stat(path).st_mode & 0o777 == 0o600
