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
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from kseg.config import load_config
from kseg.kernel.build import build_kernel
from kseg.kernel.kaggle_cli import (
    CLIResult,
    KaggleCLI,
    KaggleCLIError,
    parse_dataset_status,
    parse_dataset_upload,
    parse_kernel_output,
    parse_kernel_push,
    parse_kernel_status,
    parse_submit,
)
from kseg.kernel.push import Backoff, load_record, push, refresh_status, submit

from conftest import REPO

FAST = Backoff(first=0.01, factor=2.0, most=0.05, timeout=30.0, retries=1)
NO_SLEEP = lambda s: None  # noqa: E731


class KaggleStub:
    """Scripted answers per API method; records every request and uploaded blob."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.blobs: dict[str, bytes] = {}
        self.blob_names: dict[str, str] = {}
        self.datasets: set[str] = set()
        self.dataset_states = ["READY"]
        self.kernel_states: list[dict] = [{"status": "COMPLETE"}]
        kernel_url, dataset_url = "http://localhost/code/tester/kseg-demo-infer", "http://localhost/tester/kseg-demo"
        self.save_kernel: dict = {"ref": "/code/tester/kseg-demo-infer", "url": kernel_url, "versionNumber": 7}
        self.create_dataset: dict = {"ref": "tester/kseg-demo", "url": dataset_url, "status": "ok"}
        self.create_version: dict = {"ref": "tester/kseg-demo", "url": dataset_url, "status": "ok"}
        self.submission: dict = {"message": "Successfully submitted to Demo Steel"}
        self.put_status = 200
        self.outputs = {"submission.csv": b"ImageId,EncodedPixels,ClassId\n"}
        self.version = 0
        self._status_polls = 0
        self._dataset_polls = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]

    def body(self, method: str) -> dict:
        return [b for m, b in self.calls if m == method][-1]

    def answer(self, method: str, body: dict) -> tuple[int, dict]:
        ds = f"{body.get('ownerSlug')}/{body.get('datasetSlug') or body.get('slug')}"
        if method == "GetDatasetStatus":
            if ds not in self.datasets:
                return 404, {"code": 404, "message": f"Dataset {ds} not found"}
            state = self.dataset_states[min(self._dataset_polls, len(self.dataset_states) - 1)]
            self._dataset_polls += 1
            return 200, {"status": state}
        if method == "GetDataset":
            return 200, {"ref": ds, "currentVersionNumber": self.version}
        if method == "StartBlobUpload":
            token = f"tok{len(self.blob_names)}"
            self.blob_names[token] = body["name"]
            return 200, {"token": token, "createUrl": f"http://127.0.0.1:{self.port}/upload/{token}"}
        if method == "CreateDataset":
            if self.create_dataset.get("status") == "ok":
                self.datasets.add(ds)
                self.version, self._dataset_polls = 1, 0
            return 200, self.create_dataset
        if method == "CreateDatasetVersion":
            if self.create_version.get("status") == "ok":
                self.version, self._dataset_polls = self.version + 1, 0
            return 200, self.create_version
        if method == "SaveKernel":
            self._status_polls = 0
            return 200, self.save_kernel
        if method == "GetKernelSessionStatus":
            state = self.kernel_states[min(self._status_polls, len(self.kernel_states) - 1)]
            self._status_polls += 1
            return 200, state
        if method == "ListKernelSessionOutput":
            files = [{"fileName": n, "url": f"http://127.0.0.1:{self.port}/out/{n}"} for n in self.outputs]
            return 200, {"files": files, "log": '[{"data": "predicting\\n"}]'}
        if method == "StartSubmissionUpload":
            return 200, {"token": "subtok", "createUrl": f"http://127.0.0.1:{self.port}/upload/subtok"}
        if method in ("CreateSubmission", "CreateCodeSubmission"):
            return 200, self.submission
        return 404, {"code": 404, "message": f"stub: no {method}"}

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, obj: dict | bytes, ctype: str = "application/json") -> None:
                data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _read(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self) -> None:  # noqa: N802
                path = urlparse(self.path).path
                body = json.loads(self._read() or b"{}")
                method = path.rsplit("/", 1)[-1]
                with stub.lock:
                    stub.calls.append((method, body))
                    code, answer = stub.answer(method, body)
                self._send(code, answer)

            def do_PUT(self) -> None:  # noqa: N802
                token = urlparse(self.path).path.rsplit("/", 1)[-1]
                data = self._read()
                with stub.lock:
                    stub.calls.append(("PUT", {"token": token, "bytes": len(data)}))
                    stub.blobs[token] = data
                self._send(stub.put_status, {})

            def do_GET(self) -> None:  # noqa: N802
                name = urlparse(self.path).path.rsplit("/", 1)[-1]
                if name in stub.outputs:
                    self._send(200, stub.outputs[name], "text/csv")
                else:
                    self._send(404, {"code": 404, "message": "no such output"})

            def log_message(self, *args) -> None:
                pass

        return Handler

    def blob(self, name: str) -> bytes:
        token = next(t for t, n in self.blob_names.items() if n == name)
        return self.blobs[token]


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


# --------------------------------------------------------------------------- parsers (CLI wording)


def _res(stdout: str, rc: int = 0, stderr: str = "") -> CLIResult:
    return CLIResult(("x",), rc, stdout, stderr)


def test_parsers():
    ok = "Kernel version 12 successfully pushed.  Please check progress at https://www.kaggle.com/code/a/b\n"
    assert parse_kernel_push(_res(ok)) == (12, "https://www.kaggle.com/code/a/b")
    assert parse_kernel_push(_res("Kernel version successfully pushed.  Please check progress at u\n")) == (None, "u")
    with pytest.raises(KaggleCLIError, match="competition sources"):
        parse_kernel_push(
            _res(
                "The following are not valid competition sources and could not be added to the kernel: ['nope']\n" + ok
            )
        )
    with pytest.raises(KaggleCLIError, match="exit code 1"):
        parse_kernel_push(_res("", 1, "401 Unauthorized"))
    assert parse_dataset_upload(_res("Dataset version is being created. Please check progress at https://k/d\n")) == (
        "https://k/d"
    )
    with pytest.raises(KaggleCLIError, match="no 'Dataset ... is being created' line"):
        parse_dataset_upload(_res("Starting upload for file a.txt\n"))
    assert parse_dataset_status(_res('{"status": "ready", "current_version_number": 4}\n')) == ("ready", 4)
    assert parse_dataset_status(_res("blobs_received\n")) == ("blobs_received", None)
    st = 'a/b has status "KernelWorkerStatus.ERROR"\nFailure message: "Your notebook tried to allocate more"\n'
    assert parse_kernel_status(_res(st)) == ("error", "Your notebook tried to allocate more")
    assert parse_kernel_status(_res('a/b has status "running"\n')) == ("running", None)
    downloaded = "Output file downloaded to /o/submission.csv\nKernel log downloaded to /o/b.log \n"
    assert parse_kernel_output(_res(downloaded)) == ["/o/submission.csv", "/o/b.log"]
    submitted = "3 submissions remaining today.\nSuccessfully submitted to X"
    assert parse_submit(_res(submitted)) == "Successfully submitted to X"
    with pytest.raises(KaggleCLIError, match="submission rejected"):
        parse_submit(_res("Could not submit to competition"))
