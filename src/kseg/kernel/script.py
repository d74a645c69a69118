"""Render the kernel script: ``script_template.py`` with its ``SETTINGS`` line filled in."""

from __future__ import annotations

import pprint
from pathlib import Path
from typing import Any

__all__ = ["TEMPLATE", "SETTINGS_MARK", "render_script"]

TEMPLATE = Path(__file__).with_name("script_template.py")
SETTINGS_MARK = "SETTINGS: dict = {}  # @kseg-settings: replaced by kseg kernel build"
REQUIRED = (
    "experiment",
    "runs",
    "dataset_slug",
    "competition_dirs",
    "sample_submission",
    "test_images",
    "config",
    "predict_args",
    "overrides",
)


def render_script(settings: dict[str, Any]) -> str:
    """The kernel's Python source with ``settings`` (plain str/list/bool values) embedded as a literal."""
    missing = [k for k in REQUIRED if k not in settings]
    if missing:
        raise ValueError(f"kernel script settings: missing {', '.join(missing)}")
    source = TEMPLATE.read_text()
    if source.count(SETTINGS_MARK) != 1:
        raise RuntimeError(f"{TEMPLATE}: expected exactly one settings line {SETTINGS_MARK!r}")
    literal = pprint.pformat(settings, width=100, sort_dicts=False)
    rendered = source.replace(SETTINGS_MARK, f"SETTINGS: dict = {literal}")
    compile(rendered, "kernel script", "exec")  # a broken template fails at build time, not on Kaggle
    return rendered
