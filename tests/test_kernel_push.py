"""kseg kernel push/status/submit with the real kaggle CLI 2.x against a stub Kaggle server on 127.0.0.1.

The CLI sends every call as ``POST http://localhost/api/v1/<package>.<Service>/<Method>`` when
``KAGGLE_API_ENVIRONMENT=LOCALHOST``; ``HTTP_PROXY`` routes it (and the blob PUTs / output GETs) to the stub.
Each test gets its own KAGGLE_CONFIG_DIR (dummy credentials), HOME and TMPDIR; every CLI call is time-bounded.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from kseg.config import load_config
from kseg.kernel.build import build_kernel
from kseg.kernel.kaggle_cli import KaggleCLI, KaggleCLIError
from kseg.kernel.push import Backoff, load_record, push, refresh_status, submit

from _kaggle_stub import KaggleStub
from conftest import REPO

FAST = Backoff(first=0.01, factor=2.0, most=0.05, timeout=30.0, retries=1)
NO_SLEEP = lambda s: None  # noqa: E731


@pytest.fixture()
def stub():
    s = KaggleStub()
    s.thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()
    s.thread.join(timeout=5)


@pytest.fixture()
def cli(stub, tmp_path, monkeypatch) -> KaggleCLI:
    """The real kaggle CLI pointed at the stub, with its own config dir, HOME and TMPDIR."""
    kcfg, home, tmp = tmp_path / "kaggle-config", tmp_path / "home", tmp_path / "tmp"
    for d in (kcfg, home, tmp):
        d.mkdir()
    (kcfg / "kaggle.json").write_text(json.dumps({"username": "tester", "key": "dummy-key"}))
    os.chmod(kcfg / "kaggle.json", 0o600)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("KAGGLE_")}
    proxy = f"http://127.0.0.1:{stub.port}"
    env.update(
        {
            "KAGGLE_CONFIG_DIR": str(kcfg),
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "HTTP_PROXY": proxy,
            "http_proxy": proxy,
        }
    )
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(kcfg))  # kseg reads the username from the same kaggle.json
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    exe = shutil.which("kaggle", path=str(Path(sys.executable).parent)) or "kaggle"
    return KaggleCLI(executable=exe, env=env, timeout=60)


@pytest.fixture(scope="module")
def built_once(tmp_path_factory, demo_root):
    """runs/ (fake checkpoints: push never reads them) and kernels/ built once; tests get copies."""
    top = tmp_path_factory.mktemp("kernel-push")
    cfg = _demo_cfg(demo_root, top)
    for k in (0, 1):
        (cfg.fold_dir(k)).mkdir(parents=True)
        (cfg.fold_dir(k) / "best.pt").write_bytes(f"checkpoint {k}".encode())
    saved = os.environ.pop("KAGGLE_USERNAME", None)
    try:
        build_kernel(cfg, wheels=(), user="placeholder-user")
    finally:
        if saved is not None:
            os.environ["KAGGLE_USERNAME"] = saved
    return top


def _demo_cfg(demo_root: Path, top: Path):
    return load_config(
        REPO / "configs" / "demo.yaml",
        [f"data.root={demo_root}", f"runs_dir={top / 'runs'}", f"kernel.dir={top / 'kernels'}"],
    )


@pytest.fixture()
def cfg(built_once, demo_root, tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "none-yet"))
    for sub in ("runs", "kernels"):
        shutil.copytree(built_once / sub, tmp_path / sub)
    return _demo_cfg(demo_root, tmp_path)


# --------------------------------------------------------------------------- push / status against the stub


def test_push_creates_dataset_pushes_kernel_and_follows_it(cfg, cli, stub):
    stub.dataset_states = ["BLOBS_RECEIVED", "READY"]
    stub.kernel_states = [{"status": "RUNNING"}, {"status": "COMPLETE"}]
    record = push(cfg, cli=cli, backoff=FAST, sleep=NO_SLEEP)
    m = stub.methods()
    # the CLI checks the dataset does not exist, uploads each top-level entry, creates; then kseg polls
    assert m.index("CreateDataset") < m.index("SaveKernel") < m.index("GetKernelSessionStatus")
    assert m.count("GetKernelSessionStatus") == 2 and m.count("GetDatasetStatus") == 1 + 2  # create check + polls
    assert "ListKernelSessionOutput" in m
    uploaded = sorted(stub.blob_names.values())
    assert uploaded == ["competition.yaml", "config.yaml", "kseg-manifest.json", "runs.zip", "wheels.zip"]
    with zipfile.ZipFile(io.BytesIO(stub.blob("runs.zip"))) as z:  # --dir-mode zip kept the checkpoints
        assert z.read("demo/fold1/best.pt") == b"checkpoint 1"
    with zipfile.ZipFile(io.BytesIO(stub.blob("wheels.zip"))) as z:
        assert [n for n in z.namelist() if n.endswith(".whl")][0].startswith("kseg-0.1.0-")
    created = stub.body("CreateDataset")
    assert (created["ownerSlug"], created["slug"], created["isPrivate"]) == ("tester", "kseg-demo", True)
    assert len(created["files"]) == 5

    saved = stub.body("SaveKernel")
    script = (Path(cfg.kernel.dir) / "demo/kernel/kseg-demo-infer.py").read_text()
    assert saved["slug"] == "tester/kseg-demo-infer" and saved["text"] == script
    assert saved["enableInternet"] is False and saved["enableGpu"] is True and saved["isPrivate"] is True
    assert saved["datasetDataSources"] == ["tester/kseg-demo"] and saved["competitionDataSources"] == ["demo"]
    assert (saved["language"], saved["kernelType"]) == ("python", "script")

    assert record["dataset"] == {
        "id": "tester/kseg-demo",
        "url": "http://localhost/tester/kseg-demo",
        "action": "create",
        "status": "ready",
        "version": 1,
    }
    k = record["kernel"]
    assert (k["id"], k["version"], k["status"], k["failure_message"]) == ("tester/kseg-demo-infer", 7, "complete", None)
    out = Path(k["output_dir"])
    assert (out / "submission.csv").read_bytes() == stub.outputs["submission.csv"]
    assert k["log"] and Path(k["log"]).is_file()
    assert record["git_commit"] is None or len(record["git_commit"]) == 40
    assert record["wandb"] == {"training_runs": {}, "kernel_run": None}  # wandb disabled in the demo config
    assert load_record(cfg) == record
    meta = json.loads((Path(cfg.kernel.dir) / "demo/dataset/dataset-metadata.json").read_text())
    assert meta["id"] == "tester/kseg-demo"  # the build's placeholder user replaced before the upload


def test_second_push_creates_a_dataset_version(cfg, cli, stub):
    push(cfg, cli=cli, backoff=FAST, sleep=NO_SLEEP, wait=False)
    record = push(cfg, "retrained fold 1", cli=cli, backoff=FAST, sleep=NO_SLEEP, wait=False)
    assert stub.methods().count("CreateDataset") == 1
    assert stub.body("CreateDatasetVersion")["body"]["versionNotes"] == "retrained fold 1"
    assert record["dataset"]["action"] == "version" and record["dataset"]["version"] == 2
    assert record["kernel"]["status"] == "queued" and len(record["history"]) == 1
    assert record["history"][0]["dataset"]["action"] == "create"


def test_existing_dataset_without_record_falls_back_to_version(cfg, cli, stub):
    stub.datasets.add("tester/kseg-demo")
    record = push(cfg, cli=cli, backoff=FAST, sleep=NO_SLEEP, wait=False)
    assert "CreateDataset" not in stub.methods() and "CreateDatasetVersion" in stub.methods()
    assert record["dataset"]["action"] == "version"


def test_kernel_push_error_with_exit_code_0_fails_loudly(cfg, cli, stub):
    stub.save_kernel = {"error": "Notebook slug is taken by another user"}
    res = cli("kernels", "push", "-p", str(Path(cfg.kernel.dir) / "demo/kernel"))
    assert res.returncode == 0 and "Kernel push error" in res.stdout  # why stdout must be parsed
    with pytest.raises(KaggleCLIError, match="push rejected: Notebook slug is taken"):
        push(cfg, cli=cli, backoff=FAST, sleep=NO_SLEEP)
    record = load_record(cfg)
    assert record["dataset"]["status"] == "ready" and "version" not in record["kernel"]


def test_invalid_dataset_source_fails(cfg, cli, stub):
    stub.save_kernel = dict(stub.save_kernel, invalidDatasetSources=["tester/kseg-demo"])
    with pytest.raises(KaggleCLIError, match="rejected dataset sources.*tester/kseg-demo"):
        push(cfg, cli=cli, backoff=FAST, sleep=NO_SLEEP)


def test_dataset_error_with_exit_code_0_stops_before_the_kernel(cfg, cli, stub):
    stub.create_dataset = {"status": "error", "error": "Private dataset quota exceeded"}
    with pytest.raises(KaggleCLIError, match="Dataset creation error: Private dataset quota exceeded"):
        push(cfg, cli=cli, backoff=FAST, sleep=NO_SLEEP)
    assert "SaveKernel" not in stub.methods()


def test_dataset_processing_failure(cfg, cli, stub):
    stub.dataset_states = ["BLOBS_RECEIVED", "FAILED"]
    with pytest.raises(KaggleCLIError, match="status 'failed'"):
        push(cfg, cli=cli, backoff=FAST, sleep=NO_SLEEP)
    assert "SaveKernel" not in stub.methods()


def test_kernel_error_is_recorded_and_status_exit_code(cfg, cli, stub, monkeypatch, capsys):
    stub.kernel_states = [{"status": "QUEUED"}, {"status": "ERROR", "failureMessage": "CUDA out of memory"}]
    record = push(cfg, cli=cli, backoff=FAST, sleep=NO_SLEEP)
    assert (record["kernel"]["status"], record["kernel"]["failure_message"]) == ("error", "CUDA out of memory")
    assert record["kernel"]["output_files"]  # the log is fetched for failed runs too

    monkeypatch.setattr("kseg.kernel.push.KaggleCLI", lambda: cli)
    ov = [f"data.root={cfg.data.root}", f"runs_dir={cfg.runs_dir}", f"kernel.dir={cfg.kernel.dir}"]
    from kseg.cli import main

    assert main(["kernel", "status", "-c", str(REPO / "configs/demo.yaml"), *ov]) == 1
    out = capsys.readouterr().out
    assert "error" in out and "failure: CUDA out of memory" in out


def test_status_before_push(cfg, cli):
    with pytest.raises(FileNotFoundError, match="nothing pushed yet"):
        refresh_status(cfg, cli=cli)


def test_push_needs_credentials(cfg):
    with pytest.raises(ValueError, match="no Kaggle username"):
        push(cfg, cli=KaggleCLI(executable="/bin/false"))


def test_no_wait_then_status_then_submit(cfg, cli, stub, tmp_path):
    stub.kernel_states = [{"status": "RUNNING"}, {"status": "COMPLETE"}]
    push(cfg, cli=cli, backoff=FAST, sleep=NO_SLEEP, wait=False)
    assert "GetKernelSessionStatus" not in stub.methods()
    with pytest.raises(ValueError, match="is 'queued', not complete"):
        submit(cfg, "too early", cli=cli)
    first = refresh_status(cfg, cli=cli)
    assert first["kernel"]["status"] == "running" and "output_files" not in first["kernel"]
    second = refresh_status(cfg, cli=cli)
    assert second["kernel"]["status"] == "complete" and second["kernel"]["output_files"]
    assert load_record(cfg)["kernel"]["status"] == "complete"

    assert submit(cfg, "kernel v7", cli=cli) == "Successfully submitted to Demo Steel"
    body = stub.body("CreateCodeSubmission")
    assert (body["competitionName"], body["kernelSlug"], body["kernelVersion"], body["fileName"]) == (
        "demo",
        "kseg-demo-infer",
        7,
        "submission.csv",
    )
    csv = tmp_path / "sub.csv"
    csv.write_text("ImageId,EncodedPixels,ClassId\n")
    submit(cfg, "a csv", file=str(csv), cli=cli)
    assert stub.body("CreateSubmission")["submissionDescription"] == "a csv"
    assert [s["message"] for s in load_record(cfg)["submissions"]] == ["kernel v7", "a csv"]
    record = push(cfg, cli=cli, backoff=FAST, sleep=NO_SLEEP, wait=False)
    assert len(record["submissions"]) == 2 and "submissions" not in record["history"][0]  # kept across pushes


def test_submit_needs_a_kernel_version(cfg, cli):
    with pytest.raises(ValueError, match="no pushed kernel version"):
        submit(cfg, "code", cli=cli)


def test_submit_upload_failure(cfg, cli, stub, tmp_path):
    stub.put_status = 500
    csv = tmp_path / "sub.csv"
    csv.write_text("x\n")
    with pytest.raises(KaggleCLIError, match="submission rejected"):
        submit(cfg, "m", file=str(csv), cli=cli)


def test_push_with_wandb_offline_records_a_kernel_run(cfg, cli, stub, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    wcfg = cfg.replace(wandb=cfg.wandb.__class__(mode="offline", project="kseg-test"))
    record = push(wcfg, cli=cli, backoff=FAST, sleep=NO_SLEEP, wait=False)
    run_id = record["wandb"]["kernel_run"]
    assert isinstance(run_id, str) and run_id
    assert list((Path(cfg.kernel.dir) / "demo" / "wandb").glob(f"offline-run-*-{run_id}"))


def test_scores_of_recorded_submissions_reach_push_json_and_the_report(cfg, cli, stub, tmp_path):
    from kseg.kernel.scores import refresh_scores
    from kseg.report.table import experiment_row

    push(cfg, cli=cli, backoff=FAST, sleep=NO_SLEEP, wait=True)
    submit(cfg, "kernel v7", cli=cli)
    at = load_record(cfg)["submissions"][0]["at"]
    stub.submissions = [  # the server's answer as the kaggle CLI 2.x gets it (ApiSubmission json), newest first
        {"ref": 502, "date": "2099-01-01T00:00:00.000Z", "description": "someone else's", "status": "COMPLETE"},
        {"ref": 501, "date": at.replace("+00:00", ".000Z"), "description": "kernel v7", "status": "PENDING"},
    ]
    (sub,) = refresh_scores(cfg, cli=cli)
    assert stub.body("ListSubmissions")["competitionName"] == "demo"
    assert (sub["ref"], sub["status"], sub["public_score"], sub["private_score"]) == ("501", "pending", None, None)
    stub.submissions[1].update(status="COMPLETE", publicScore="0.8123", privateScore="0.7999")
    (sub,) = refresh_scores(cfg, cli=cli)  # followed by its ref now
    assert (sub["status"], sub["public_score"], sub["private_score"]) == ("complete", 0.8123, 0.7999)
    assert load_record(cfg)["submissions"][0]["public_score"] == 0.8123
    cfg.layout.config.parent.mkdir(parents=True, exist_ok=True)
    cfg.layout.config.write_text(f"kernel:\n  dir: {cfg.kernel.dir}\n")
    assert experiment_row(Path(cfg.runs_dir), cfg.name).lb == ["v7: 0.8123"]  # kseg report's LB column
