"""The ``kseg`` command line: parses, sets up logging and dispatches to one stage of ``kseg.commands``.

The stages and their arguments are in ``kseg.commands`` (``stages.STAGES``, one module per stage).
"""

from __future__ import annotations

import logging
import os
import sys

from kseg.commands.stages import build_parser, dispatch, parse_args


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(argv: list[str] | None = None) -> int:
    """``kseg [-v] STAGE ...``: the stage's exit code (0 and the help without a stage)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # kseg runs offline: no update check on import
    parser = build_parser()
    args = parse_args(parser, argv)
    if not args.stage:
        parser.print_help()
        return 0
    setup_logging(args.verbose)
    return dispatch(args)


if __name__ == "__main__":
    sys.exit(main())
