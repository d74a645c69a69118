"""kseg.kernel.scores and kaggle_cli.parse_submissions: recorded submissions matched to the server's list."""

from __future__ import annotations

import pytest

from kseg.kernel.kaggle_cli import CLIResult, KaggleCLIError, parse_submissions
from kseg.kernel.scores import match_submissions

# What kaggle 2.2.5 prints for `competitions submissions COMP -v`: print_csv of ApiSubmission fields, str() of
# each value (a datetime with its zone, the SubmissionStatus enum, '' for an unset score).
CSV = """Warning: Looks like you're using an outdated API Version
ref,fileName,date,description,status,publicScore,privateScore
49001,submission.csv,2026-12-01 18:05:11.250000+00:00,"tta hflip, 5 folds",SubmissionStatus.PENDING,,
48990,submission.csv,2026-12-01 17:02:03+00:00,baseline,SubmissionStatus.COMPLETE,0.8812,0.8794
48975,sub.csv,2026-11-30 09:00:00+00:00,broken,SubmissionStatus.ERROR,None,None
"""


def _res(stdout: str, rc: int = 0) -> CLIResult:
    return CLIResult(("competitions", "submissions", "c", "-v"), rc, stdout, "")


def test_parse_submissions_reads_the_cli_csv() -> None:
    rows = parse_submissions(_res(CSV))
    assert [r["ref"] for r in rows] == ["49001", "48990", "48975"]
    assert rows[0]["description"] == "tta hflip, 5 folds" and rows[0]["status"] == "pending"
    assert (rows[0]["public_score"], rows[0]["private_score"]) == (None, None)
    assert (rows[1]["status"], rows[1]["public_score"], rows[1]["private_score"]) == ("complete", 0.8812, 0.8794)
    assert (rows[2]["status"], rows[2]["public_score"]) == ("error", None)
    assert parse_submissions(_res("No submissions found\n")) == []
    with pytest.raises(KaggleCLIError, match="no submissions csv"):
        parse_submissions(_res("403 Forbidden: accept the competition rules first\n"))
    with pytest.raises(KaggleCLIError):
        parse_submissions(_res(CSV, rc=1))


def _row(ref: str, date: str, text: str, public: float | None = None) -> dict:
    status = "complete" if public is not None else "pending"
    return {"ref": ref, "date": date, "description": text, "status": status, "public_score": public}


def test_each_recorded_submission_gets_its_own_server_row() -> None:
    recorded = [
        {"message": "v7", "at": "2026-12-01T17:00:30+00:00"},
        {"message": "v7", "at": "2026-12-01T18:00:00+00:00"},  # the same message submitted again later
        {"message": "never arrived", "at": "2026-12-01T18:10:00+00:00"},
    ]
    rows = [  # newest first, as the server lists them
        _row("3", "2026-12-01 17:59:40+00:00", "v7"),  # 20 s before it was recorded: within the clock slack
        _row("2", "2026-12-01 17:00:10+00:00", "v7", 0.81),
        _row("1", "2026-11-20 10:00:00+00:00", "v7", 0.55),  # an older one, not submitted through kseg
        _row("0", "2026-12-01 17:30:00+00:00", "other", 0.90),
    ]
    for r in rows:
        r["private_score"] = None
    assert match_submissions(recorded, rows) == 2
    assert [s.get("ref") for s in recorded] == ["2", "3", None]
    assert (recorded[0]["public_score"], recorded[1]["status"]) == (0.81, "pending")
    assert "status" not in recorded[2]
    rows[0].update(status="complete", public_score=0.83)
    rows.reverse()  # order no longer matters once the ref is known
    assert match_submissions(recorded, rows) == 2
    assert [(s.get("ref"), s.get("public_score")) for s in recorded] == [("2", 0.81), ("3", 0.83), (None, None)]
