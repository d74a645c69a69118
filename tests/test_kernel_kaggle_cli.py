"""kseg.kernel.kaggle_cli: the parsers of what the kaggle CLI 2.x prints."""

from __future__ import annotations

import pytest

from kseg.kernel.kaggle_cli import (
    CLIResult,
    KaggleCLIError,
    parse_dataset_status,
    parse_dataset_upload,
    parse_kernel_output,
    parse_kernel_push,
    parse_kernel_status,
    parse_submit,
)


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
