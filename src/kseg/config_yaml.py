"""The YAML side of experiment configs: the ``defaults:`` chain, competition specs by name, ``key=value`` text.

Plain dicts in, plain dicts out; ``kseg.config`` turns the merged dict into the typed ``Config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kseg.typed import ConfigError


def configs_root(path: Path) -> Path | None:
    """The nearest ancestor folder named ``configs`` (None when the file is elsewhere)."""
    for parent in path.resolve().parents:
        if parent.name == "configs":
            return parent
    return None


def deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def find_yaml(name: str, here: Path, root: Path | None) -> Path:
    name = name if name.endswith((".yaml", ".yml")) else name + ".yaml"
    candidates = [here / name] + ([root / name] if root else []) + [Path(name)]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"config {name!r} not found (looked in {', '.join(str(c.parent) for c in candidates)})")


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_raw(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The merged plain dict of a YAML file and its ``defaults:`` chain (earlier entries lower)."""
    path = path.resolve()
    if path in _seen:
        raise ConfigError(f"{path}: circular defaults: {' -> '.join(str(p) for p in _seen)}")
    data = read_yaml(path)
    defaults = data.pop("defaults", [])
    if isinstance(defaults, str):
        defaults = [defaults]
    merged: dict = {}
    for d in defaults:
        merged = deep_merge(merged, load_raw(find_yaml(str(d), path.parent, configs_root(path)), _seen + (path,)))
    return deep_merge(merged, data)


def resolve_competition(raw: dict, root: Path | None, here: Path) -> dict:
    """Replace ``competition: <name>`` by the spec dict of ``configs/competitions/<name>.yaml``."""
    comp = raw.get("competition")
    if comp is None:
        raise ConfigError("missing required key competition (a name from configs/competitions/ or a mapping)")
    if isinstance(comp, str):
        cand = [Path(comp)] if comp.endswith((".yaml", ".yml")) else []
        base = [root / "competitions"] if root else []
        base += [here / "competitions", Path("configs") / "competitions"]
        cand += [b / f"{comp}.yaml" for b in base]
        for c in cand:
            if c.is_file():
                raw = dict(raw)
                raw["competition"] = read_yaml(c)
                return raw
        raise ConfigError(f"competition: {comp!r}: no spec found at {', '.join(str(c) for c in cand)}")
    if isinstance(comp, dict) and "extends" in comp:
        comp = dict(comp)
        parent = resolve_competition({"competition": comp.pop("extends")}, root, here)["competition"]
        raw = dict(raw)
        raw["competition"] = deep_merge(parent, comp)
    return raw


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", yaml-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value")
    key, value = text.split("=", 1)
    key = key.strip()
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key, parsed
