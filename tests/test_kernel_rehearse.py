"""kseg kernel rehearse: the network is really cut, the venv hides kseg's source, pass/fail rules, end to end."""

from __future__ import annotations

import json
import logging
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from kseg.cli import main
from kseg.config import load_config
from kseg.kernel import offline
from kseg.kernel.build import build_kernel
from kseg.kernel.offline import GUARD_MESSAGE, install_socket_guard, probe_unshare, resolve_isolation
from kseg.kernel.rehearse import make_venv, offline_env, rehearse, run_offline

from conftest import REPO

MODES = [
    pytest.param("unshare", marks=pytest.mark.skipif(probe_unshare() is None, reason="unshare -n not permitted")),
    "guard",
]
PROBE = """
import socket, sys
s = socket.create_connection(("127.0.0.1", {port}), timeout=5)
print("CONNECTED")
"""


@pytest.fixture()
def loopback_port():
    """A TCP server on the host's loopback: reachable from any process that has the network."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(timeout=2)
    srv.close()


def _cfg(demo_root: Path, tmp_path: Path):
    return load_config(
        REPO / "configs" / "demo.yaml",
        [f"data.root={demo_root}", f"runs_dir={tmp_path / 'runs'}", f"kernel.dir={tmp_path / 'kernels'}"],
    )


def _built(cfg, monkeypatch, real_checkpoints: bool = False):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    for k in (0, 1):
        path = cfg.fold_dir(k) / "best.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        if real_checkpoints:
            from kseg.models import build_model, save_checkpoint

            save_checkpoint(path, build_model(cfg), cfg)
        else:
            path.write_bytes(b"unused")
    return build_kernel(cfg, wheels=())


# --------------------------------------------------------------------------- the network cut


@pytest.mark.parametrize("mode", MODES)
def test_network_is_blocked(mode, tmp_path, loopback_port):
    python, site_packages = make_venv(tmp_path / "venv")
    if mode == "guard":
        install_socket_guard(site_packages)
    env = offline_env(tmp_path / "root", tmp_path / "home", tmp_path / "venv")
    probe = [str(python), "-c", PROBE.format(port=loopback_port)]
    rc = run_offline(probe, mode, env, tmp_path, tmp_path / "probe.log", timeout=60, echo=False)
    text = (tmp_path / "probe.log").read_text()
    assert rc != 0 and "CONNECTED" not in text
    assert ("Network is unreachable" in text) if mode == "unshare" else (GUARD_MESSAGE in text)


def test_probe_connects_without_isolation(tmp_path, loopback_port):
    """Control for the test above: the same probe in the same kind of venv does reach the server."""
    python, _ = make_venv(tmp_path / "venv")
    env = offline_env(tmp_path / "root", tmp_path / "home", tmp_path / "venv")
    rc = run_offline(
        [str(python), "-c", PROBE.format(port=loopback_port)],
        "none",
        env,
        tmp_path,
        tmp_path / "probe.log",
        timeout=60,
        echo=False,
    )
    assert rc == 0 and "CONNECTED" in (tmp_path / "probe.log").read_text()


def test_guard_allows_unix_sockets(tmp_path):
    python, site_packages = make_venv(tmp_path / "venv")
    install_socket_guard(site_packages)
    env = offline_env(tmp_path / "root", tmp_path / "home", tmp_path / "venv")
    code = "import socket; a, b = socket.socketpair(); a.sendall(b'ok'); print(b.recv(2).decode())"
    rc = run_offline([str(python), "-c", code], "guard", env, tmp_path, tmp_path / "log", timeout=60, echo=False)
    assert rc == 0 and (tmp_path / "log").read_text().strip() == "ok"


def test_venv_sees_host_packages_not_kseg_source(tmp_path):
    python, _ = make_venv(tmp_path / "venv")
    env = offline_env(tmp_path / "root", tmp_path / "home", tmp_path / "venv")
    code = "import importlib.util as u, yaml, sys; print(u.find_spec('kseg'), sys.prefix)"
    rc = run_offline([str(python), "-c", code], "none", env, tmp_path, tmp_path / "log", timeout=60, echo=False)
    out = (tmp_path / "log").read_text().split()
    assert rc == 0 and out[0] == "None" and out[1] == str(tmp_path / "venv")


def test_isolation_falls_back_to_the_guard_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(offline, "probe_unshare", lambda: None)
    with caplog.at_level(logging.WARNING):
        assert resolve_isolation("auto") == "guard"
    assert "unshare -n is not permitted" in caplog.text
    with pytest.raises(RuntimeError, match="'unshare' requested"):
        resolve_isolation("unshare")
    assert resolve_isolation("guard") == "guard"


# --------------------------------------------------------------------------- pass / fail rules


def _replace_script(result, body: str) -> None:
    result.script.write_text(body)


@pytest.mark.parametrize("isolation", ["auto", "guard"])
def test_rehearsal_fails_when_the_script_needs_the_network(isolation, demo_root, tmp_path, monkeypatch, loopback_port):
    cfg = _cfg(demo_root, tmp_path)
    result = _built(cfg, monkeypatch)
    _replace_script(
        result,
        f"""
import os, shutil, socket
from pathlib import Path
root = Path(os.environ["KSEG_KAGGLE_ROOT"])
socket.create_connection(("127.0.0.1", {loopback_port}), timeout=5)  # e.g. a weights download
shutil.copy(root / "input/demo/sample_submission.csv", "submission.csv")
""",
    )
    r = rehearse(cfg, isolation=isolation, timeout=120, echo=False)
    assert not r.passed and r.returncode != 0
    assert any("exited with code" in p for p in r.problems)
    assert "working/submission.csv was not written" in r.problems
    saved = json.loads((tmp_path / "kernels/demo/rehearsal/rehearsal.json").read_text())
    assert saved["passed"] is False and saved["isolation"] in ("unshare", "guard")


def test_rehearsal_layout_and_validation(demo_root, tmp_path, monkeypatch):
    """The script sees input/<competition>, input/<slug>, cwd working/; a valid csv passes, a bad one fails.
    Paths in the config are relative to the project folder, as in a real checkout."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(REPO / "configs" / "demo.yaml", [f"data.root={demo_root}", "runs_dir=runs", "kernel.dir=kernels"])
    result = _built(cfg, monkeypatch)
    script = """
import os, shutil, sys
from pathlib import Path
root = Path(os.environ["KSEG_KAGGLE_ROOT"])
assert Path.cwd().resolve() == (root / "working").resolve(), Path.cwd()
assert (root / "input/kseg-demo/kseg-manifest.json").is_file()
assert (root / "input/demo/test_images").is_dir()
lines = (root / "input/demo/sample_submission.csv").read_text().splitlines()
Path("submission.csv").write_text("\\n".join(lines[:{keep}]) + "\\n")
"""
    _replace_script(result, script.format(keep=10**6))
    ok = rehearse(cfg, isolation="auto", timeout=120, echo=False)
    assert ok.passed and ok.returncode == 0 and ok.problems == []
    assert ok.submission.read_text() == (demo_root / "sample_submission.csv").read_text()

    _replace_script(result, script.format(keep=5))  # header + 4 rows: most (image, class) rows missing
    bad = rehearse(cfg, isolation="auto", timeout=120, echo=False)
    assert not bad.passed and bad.returncode == 0
    assert any("missing" in p for p in bad.problems)


def test_rehearse_needs_a_build(demo_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="kseg kernel build"):
        rehearse(_cfg(demo_root, tmp_path), echo=False)


def test_cli_rehearse_exit_code(demo_root, tmp_path, monkeypatch, capsys):
    cfg = _cfg(demo_root, tmp_path)
    result = _built(cfg, monkeypatch)
    _replace_script(result, "import sys; print('boom'); sys.exit(3)")
    ov = [f"data.root={demo_root}", f"runs_dir={tmp_path / 'runs'}", f"kernel.dir={tmp_path / 'kernels'}"]
    assert main(["kernel", "rehearse", "-c", str(REPO / "configs/demo.yaml"), "--quiet", *ov]) == 1
    out = capsys.readouterr().out
    assert "rehearsal FAILED" in out and "exited with code 3" in out
    assert "boom" in (tmp_path / "kernels/demo/rehearsal/rehearsal.log").read_text()


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_demo_kernel_rehearses_offline_green(demo_root, tmp_path, monkeypatch):
    """The real generated script: wheels installed offline, kseg predict + validate, network cut."""
    cfg = _cfg(demo_root, tmp_path)
    _built(cfg, monkeypatch, real_checkpoints=True)
    r = rehearse(cfg, isolation="auto", timeout=600, echo=False)
    text = r.log_path.read_text()
    assert r.passed, f"{r.problems}\n{text[-3000:]}"
    assert r.returncode == 0 and r.submission.is_file()
    venv_kseg = [line for line in text.splitlines() if "kseg from" in line]
    assert venv_kseg and "/venv/" in venv_kseg[0] and str(REPO / "src") not in venv_kseg[0]
    assert "installing 1 wheels: kseg-0.1.0-py3-none-any.whl" in text
    assert "kseg predict failed" not in text and "submission: " in text


def _fake_wheel(folder: Path) -> Path:
    """A pure-Python wheel whose requirements the host cannot meet."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fakedep-1.0-py3-none-any.whl"
    files = {
        "fakedep/__init__.py": "",
        "fakedep-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: fakedep\nVersion: 1.0\n"
        "Requires-Dist: surely-missing-pkg>=1\nRequires-Dist: pyyaml>=999\n"
        'Requires-Dist: other-missing-pkg; python_version < "3"\n',
        "fakedep-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    files["fakedep-1.0.dist-info/RECORD"] = "".join(f"{n},,\n" for n in files) + "fakedep-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def test_missing_dependency_of_a_shipped_wheel_is_named(demo_root, tmp_path, monkeypatch):
    """The real script stops before predicting, naming what the image lacks (markers are honoured)."""
    cfg = _cfg(demo_root, tmp_path)
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    for k in (0, 1):
        cfg.fold_dir(k).mkdir(parents=True)
        (cfg.fold_dir(k) / "best.pt").write_bytes(b"unused")
    _fake_wheel(tmp_path / "cache")
    build_kernel(cfg, wheels=("fakedep==1.0",), cache_dir=tmp_path / "cache")
    r = rehearse(cfg, isolation="auto", timeout=120, echo=False)
    text = r.log_path.read_text()
    assert not r.passed and r.returncode != 0
    assert "fakedep needs surely-missing-pkg>=1: surely-missing-pkg is not installed" in text
    assert "fakedep needs pyyaml>=999: found pyyaml" in text
    assert "other-missing-pkg" not in text and "running" not in text  # predict never started
