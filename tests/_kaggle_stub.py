"""A stub Kaggle API server on 127.0.0.1 for the real kaggle CLI 2.x (``KAGGLE_API_ENVIRONMENT=LOCALHOST``
sends every call as ``POST http://localhost/api/v1/<package>.<Service>/<Method>``; ``HTTP_PROXY`` routes it,
and the blob PUTs / output GETs, here)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


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
        self.submissions: list[dict] = []  # ListSubmissions answers, newest first (ApiSubmission json)
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
        if method == "ListSubmissions":
            return 200, {"submissions": self.submissions}
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
