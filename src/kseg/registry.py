"""Small name -> object registries that fail loudly on unknown names."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Raised for an unknown registry name; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


def unknown_name(key: str, value: object, choices: Sequence[str], case_sensitive: bool = False) -> str:
    """``"key: 'vlaue' is not one of a, b; did you mean value?"`` (the hint only when one is close)."""
    fold = (lambda s: s) if case_sensitive else str.lower
    spelled = {fold(c): c for c in choices}
    close = difflib.get_close_matches(fold(str(value)), list(spelled), n=1, cutoff=0.6)
    hint = f"; did you mean {spelled[close[0]]}?" if close else ""
    return f"{key}: {value!r} is not one of {', '.join(c or repr(c) for c in choices)}{hint}"


class Registry(Generic[T]):
    """Maps names (case-insensitive unless ``case_sensitive``) to objects; ``get`` raises with the choices listed.

    The registered spelling and order are kept: ``choices()`` is what errors and config messages list.

    >>> LOSSES = Registry("loss")
    >>> @LOSSES.register("bce")
    ... def make_bce(): ...
    """

    def __init__(self, kind: str, case_sensitive: bool = False) -> None:
        self.kind = kind
        self.case_sensitive = case_sensitive
        self._items: dict[str, T] = {}
        self._spelling: dict[str, str] = {}

    def _key(self, name: str) -> str:
        return name if self.case_sensitive else name.lower()

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def _add(o: T) -> T:
            key = self._key(name)
            if key in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[key] = o
            self._spelling[key] = name
            return o

        return _add if obj is None else _add(obj)

    def unknown(self, name: object, key: str | None = None) -> str:
        """The message for an unknown ``name`` under config ``key`` (default: the kind): choices + closest."""
        return unknown_name(key or self.kind, name, self.choices(), self.case_sensitive)

    def canonical(self, name: str, key: str | None = None) -> str:
        """The registered spelling of ``name`` (``unet`` -> ``Unet``); raises ``RegistryError`` naming ``key``."""
        k = self._key(str(name))
        if k not in self._items:
            raise RegistryError(self.unknown(name, key))
        return self._spelling[k]

    def get(self, name: str) -> T:
        return self._items[self._key(self.canonical(name))]

    def names(self) -> list[str]:
        """Lookup keys, sorted (lower-case unless ``case_sensitive``)."""
        return sorted(self._items)

    def choices(self) -> list[str]:
        """Registered spellings in registration order."""
        return list(self._spelling.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
