"""``kseg validate SUBMISSION -c CONFIG``: check a submission csv the way Kaggle would.

With config overrides put the options first: ``kseg validate -c CONFIG SUBMISSION key=value ...``
(argparse cannot take positionals on both sides of ``-c``).

Exit code 1 with every problem listed when the file would be rejected; 0 with a summary otherwise.
"""

from __future__ import annotations

import argparse

from kseg.commands.args import add_config_arguments
from kseg.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submission", help="submission csv to check")
    add_config_arguments(parser)
    parser.epilog = "with overrides: kseg validate -c CONFIG SUBMISSION key=value ..."


def run(args: argparse.Namespace) -> int:
    from kseg.submission.validate import validate_submission

    cfg = load_config(args.config, args.overrides)
    report = validate_submission(args.submission, cfg)
    if not report.ok:
        for problem in report.problems:
            print(problem)
        print(f"INVALID: {args.submission}: {len(report.problems)} problems")
        return 1
    print(report.summary())
    return 0
