"""Strict conversion of plain YAML data into frozen dataclasses, with each value rule declared at its field.

Unknown keys, wrong types, values outside a ``Literal`` or a registry (``choice``) and values out of
range (``bounded``) fail with the dotted key, the bad value and what was expected.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from kseg.registry import Registry, unknown_name

T = TypeVar("T")
_NUMBERS = {int: "an integer", float: "a number"}


class ConfigError(ValueError):
    """A config key, value or type is wrong; the message names the dotted key."""


# --------------------------------------------------------------------------- rules declared at fields


def choice(registry: str, default: Any = dataclasses.MISSING, *, also: tuple[str, ...] = ()) -> Any:
    """A name field valid when the registry ``"module:ATTR"`` (imported on the first check) holds it.

    ``also`` lists extra accepted values (e.g. ``""`` = unset). The value is stored in the registered spelling.
    """
    return dataclasses.field(default=default, metadata={"registry": registry, "also": also})


def _bounds_text(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    """``>= 1``, ``> 0``, ``in (0, 1)``, ``in [0, 1]`` ..."""
    low = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else ""
    high = f"{le}]" if le is not None else f"{lt})" if lt is not None else ""
    if low and high:
        return f"in {low}, {high}"
    if low:
        return f"{'>=' if ge is not None else '>'} {low[1:]}"
    return f"{'<=' if le is not None else '<'} {high[:-1]}"


def bounded(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    note: str = "",
    valid: str = "",
) -> Any:
    """A number field (or tuple of numbers: each) within the bounds; errors show ``valid`` or the bounds + note."""
    text = valid or f"{_bounds_text(ge, gt, le, lt)} {note}".strip()
    return dataclasses.field(default=default, metadata={"check": Bounds(ge, gt, le, lt, text)})


@dataclasses.dataclass(frozen=True)
class Bounds:
    """Inclusive (``ge``/``le``) and exclusive (``gt``/``lt``) bounds; ``valid`` is the text errors show."""

    ge: float | None
    gt: float | None
    le: float | None
    lt: float | None
    valid: str

    def __call__(self, value: Any) -> bool:
        items = value if isinstance(value, tuple) else (value,)
        return all(
            (self.ge is None or v >= self.ge)
            and (self.gt is None or v > self.gt)
            and (self.le is None or v <= self.le)
            and (self.lt is None or v < self.lt)
            for v in items
        )


def out_of_range(key: str, value: Any, valid: str) -> ConfigError:
    """``"key: value is out of range; valid: >= 1"`` (tuples shown as lists, as in the YAML)."""
    return ConfigError(f"{key}: {to_dict(value)!r} is out of range; valid: {valid}")


def _registry(path: str) -> Registry:
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def check_field(f: dataclasses.Field, value: Any, key: str) -> Any:
    """Apply the rules declared in ``f.metadata`` to a converted ``value``; returns it (registry spelling)."""
    meta = f.metadata
    if "registry" in meta and value not in meta["also"]:
        registry = _registry(meta["registry"])
        if value not in registry:
            raise ConfigError(unknown_name(key, value, [*meta["also"], *registry.choices()], registry.case_sensitive))
        value = registry.canonical(value)
    rule = meta.get("check")
    if rule is not None and not rule(value):
        raise out_of_range(key, value, rule.valid)
    return value


def validate(obj: Any, prefix: str = "") -> None:
    """Re-run every field rule of dataclass tree ``obj`` (e.g. one built in code with ``dataclasses.replace``)."""
    for f in dataclasses.fields(obj):
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(obj, f.name)
        check_field(f, value, key)
        items = enumerate(value) if isinstance(value, tuple) else ()
        for i, v in [(None, value), *items]:
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                validate(v, key if i is None else f"{key}[{i}]")


# --------------------------------------------------------------------------- conversion


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _number(value: Any, tp: type, key: str) -> Any:
    """``value`` as ``tp`` (int or float): numbers, integral floats for ints, numeric strings; never bools."""
    if not isinstance(value, bool):
        if isinstance(value, int) or (isinstance(value, float) and (tp is float or value.is_integer())):
            return tp(value)
        if isinstance(value, str):
            try:
                return tp(value)
            except ValueError:
                pass
    raise ConfigError(f"{key}: expected {_NUMBERS[tp]}, got {value!r}")


def _literal(value: Any, choices: tuple[Any, ...], key: str) -> Any:
    if value in choices:
        return value
    if isinstance(value, str):
        for c in choices:  # case-insensitive match for names
            if isinstance(c, str) and c.lower() == value.lower():
                return c
    raise ConfigError(unknown_name(key, value, [str(c) for c in choices]))


def _union(value: Any, tp: Any, key: str) -> Any:
    args = get_args(tp)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if type(None) in args:
            return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return coerce(value, arg, key)
        except ConfigError as e:
            errors.append(str(e))
    raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {tp}")


def _tuple(value: Any, tp: Any, key: str) -> tuple:
    args = get_args(tp)
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(items))
    if len(items) == 1 and len(args) > 1 and all(a == args[0] for a in args):
        items = items * len(args)  # `image_size: 128` -> (128, 128)
    if len(items) != len(args):
        raise ConfigError(f"{key}: expected {len(args)} values, got {value!r}")
    return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(items, args, strict=True)))


def _scalar(value: Any, tp: Any, key: str) -> Any:
    if tp in _NUMBERS:
        return _number(value, tp, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {_type_name(tp)}")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise ``ConfigError`` naming ``key``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        return _literal(value, get_args(tp), key)
    if origin in (Union, types.UnionType):
        return _union(value, tp, key)
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin is tuple:
        return _tuple(value, tp, key)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    return _scalar(value, tp, key)


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys raise with the valid ones listed."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    where = prefix + "." if prefix else ""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key {where}{unknown[0]!s}: valid keys here are {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}{name}"
        kwargs[name] = check_field(fields[name], coerce(value, hints[name], key), key)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise ConfigError(f"missing required key {where}{missing[0]}")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Plain YAML-friendly data (tuples -> lists) of a dataclass tree."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def field_at(cls: type, dotted: str) -> tuple[Any, dataclasses.Field]:
    """The declared type and the field of dotted key ``a.b.c`` under dataclass ``cls``."""
    tp: Any = cls
    found: dataclasses.Field | None = None
    for part in dotted.split("."):
        if get_origin(tp) in (Union, types.UnionType):  # Optional[Section] on the way down
            non_none = [a for a in get_args(tp) if a is not type(None)]
            if len(non_none) == 1:
                tp = non_none[0]
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"unknown key {dotted}: {part!r} is not inside a section")
        hints = get_type_hints(tp)
        if part not in hints:
            raise ConfigError(f"unknown key {dotted}: valid keys here are {', '.join(sorted(hints))}")
        found = next(f for f in dataclasses.fields(tp) if f.name == part)
        tp = hints[part]
    assert found is not None
    return tp, found


def field_type(cls: type, dotted: str) -> Any:
    """The declared type of dotted field ``a.b.c`` under dataclass ``cls``."""
    return field_at(cls, dotted)[0]


def dict_prefix(cls: type, dotted: str) -> str | None:
    """The dotted name of the ``dict`` field that key ``a.b.c`` reaches into (``model.kwargs`` for
    ``model.kwargs.decoder_channels``), None when the key names a field itself or does not exist."""
    parts = dotted.split(".")
    for i in range(1, len(parts)):
        prefix = ".".join(parts[:i])
        try:
            tp = field_type(cls, prefix)
        except ConfigError:
            return None
        if tp is dict or get_origin(tp) is dict:
            return prefix
    return None


def convert_key(cls: type, dotted: str, value: Any) -> Any:
    """``value`` converted and checked as dotted field ``dotted`` of ``cls`` (unknown keys raise)."""
    tp, f = field_at(cls, dotted)
    return check_field(f, coerce(value, tp, dotted), dotted)


__all__ = [
    "ConfigError",
    "Bounds",
    "bounded",
    "check_field",
    "choice",
    "coerce",
    "convert_key",
    "dict_prefix",
    "field_at",
    "field_type",
    "from_dict",
    "out_of_range",
    "to_dict",
    "validate",
    "typing",
]
