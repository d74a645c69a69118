"""Kaggle slug and title rules, the names of an experiment's dataset and kernel, and the Kaggle username.

Rules (as the official ``kaggle`` CLI 2.x enforces them before any upload, and as Kaggle URLs need):

* dataset slug: lowercase letters, digits and single hyphens, no leading/trailing hyphen, 6-50 chars;
* kernel slug: same characters, 5-50 chars (Kaggle derives it from the title);
* dataset title: 6-50 chars; kernel title: at least 5 chars (and at most 50).

A name that breaks a rule fails at build time with the rule it broke, not after an upload.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kseg.config import Config

log = logging.getLogger(__name__)

__all__ = [
    "KernelNames",
    "SlugError",
    "slugify",
    "validate_slug",
    "validate_title",
    "kernel_names",
    "kaggle_username",
    "kaggle_config_dir",
]

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_USER = re.compile(r"^[A-Za-z0-9_-]{1,50}$")
DATASET_SLUG_LEN = (6, 50)
KERNEL_SLUG_LEN = (5, 50)
DATASET_TITLE_LEN = (6, 50)
KERNEL_TITLE_LEN = (5, 50)


class SlugError(ValueError):
    """A slug, title or username Kaggle would reject."""


def slugify(text: str) -> str:
    """``"TGS salt / UNet r34"`` -> ``"tgs-salt-unet-r34"`` (lowercase, runs of other chars -> one hyphen)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def validate_slug(slug: str, what: str = "dataset slug", length: tuple[int, int] = DATASET_SLUG_LEN) -> str:
    """Return ``slug`` or raise ``SlugError`` naming the rule it breaks."""
    lo, hi = length
    if not _SLUG.match(slug or ""):
        raise SlugError(
            f"{what} {slug!r}: only lowercase letters, digits and single hyphens (not at either end) are allowed"
            + (f"; try {slugify(slug)!r}" if slug and slugify(slug) else "")
        )
    if not lo <= len(slug) <= hi:
        raise SlugError(f"{what} {slug!r}: must be {lo}-{hi} characters long (it has {len(slug)})")
    return slug


def validate_title(title: str, what: str = "dataset title", length: tuple[int, int] = DATASET_TITLE_LEN) -> str:
    """Return ``title`` or raise ``SlugError`` naming the length rule it breaks."""
    lo, hi = length
    if not lo <= len(title.strip()) <= hi:
        raise SlugError(f"{what} {title!r}: must be {lo}-{hi} characters long (it has {len(title.strip())})")
    return title


@dataclass(frozen=True)
class KernelNames:
    """Kaggle names of one experiment's dataset and kernel (``user`` may be a placeholder before push)."""

    user: str
    dataset_slug: str
    dataset_title: str
    kernel_slug: str
    kernel_title: str

    @property
    def dataset_id(self) -> str:
        return f"{self.user}/{self.dataset_slug}"

    @property
    def kernel_id(self) -> str:
        return f"{self.user}/{self.kernel_slug}"


def kernel_names(cfg: Config, user: str) -> KernelNames:
    """Validated names from ``cfg.kernel`` with defaults derived from the experiment name.

    Dataset slug ``kernel.slug`` or ``kseg-<experiment>``; kernel slug ``kernel.kernel_slug``, else the slug
    of ``kernel.title``, else ``<dataset slug>-infer``; titles default to their slugs.
    """
    k = cfg.kernel
    ds = k.slug or slugify(f"kseg-{cfg.name}")
    validate_slug(ds, "kernel.slug (dataset slug)", DATASET_SLUG_LEN)
    ks = k.kernel_slug or (slugify(k.title) if k.title else f"{ds}-infer")
    validate_slug(ks, "kernel.kernel_slug (kernel slug)", KERNEL_SLUG_LEN)
    ds_title = validate_title(k.dataset_title or ds, "kernel.dataset_title", DATASET_TITLE_LEN)
    k_title = validate_title(k.title or ks, "kernel.title (kernel title)", KERNEL_TITLE_LEN)
    if slugify(k_title) != ks:
        raise SlugError(
            f"kernel.title {k_title!r} resolves to slug {slugify(k_title)!r}, not kernel.kernel_slug {ks!r}: "
            "Kaggle derives the kernel URL from the title, so make them agree"
        )
    if user and not _USER.match(user):
        raise SlugError(f"Kaggle username {user!r}: expected letters, digits, '-' or '_' only")
    return KernelNames(user, ds, ds_title, ks, k_title)


def kaggle_config_dir() -> Path:
    """Where the kaggle CLI looks for ``kaggle.json``: ``KAGGLE_CONFIG_DIR``, ``~/.kaggle``, else XDG."""
    env = os.environ.get("KAGGLE_CONFIG_DIR")
    if env:
        return Path(env)
    home = Path.home() / ".kaggle"
    if home.exists():
        return home
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"


def check_credentials_mode(path: Path) -> bool:
    """Warn (and return False) when ``kaggle.json`` is readable or writable by anyone but its owner."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s holds your Kaggle API key but has permissions %s: run `chmod 600 %s`", path, oct(mode), path)
        return False
    return True


def kaggle_username() -> str | None:
    """``KAGGLE_USERNAME``, else ``username`` in ``kaggle.json`` of ``kaggle_config_dir()``; None when neither."""
    user = os.environ.get("KAGGLE_USERNAME", "").strip()
    if user:
        return user
    path = kaggle_config_dir() / "kaggle.json"
    if not path.is_file():
        return None
    check_credentials_mode(path)
    try:
        data = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError as e:
        raise SlugError(f"{path}: not valid JSON ({e})") from e
    user = str(data.get("username", "")).strip() if isinstance(data, dict) else ""
    return user or None
