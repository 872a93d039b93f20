"""One generic name -> object registry, shared by datasets, strategies, optimizers and augmentations.

Registries hold plain callables/objects keyed by name; lookups that miss raise
``UnknownNameError`` carrying the valid choices and a did-you-mean, so the spec layer can turn
them into one clear message naming the file and key path.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from tlbench.errors import TlbenchError

T = TypeVar("T")


class UnknownNameError(TlbenchError, KeyError):
    """A name that is not in a registry; knows the valid choices and the closest matches.

    A ``KeyError`` still, for the callers that catch a failed lookup as one.
    """

    def __init__(self, kind: str, name: str, choices: list[str]):
        self.kind = kind
        self.name = name
        self.choices = sorted(choices)
        self.suggestions = difflib.get_close_matches(name, self.choices, n=3, cutoff=0.5)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        msg = f"unknown {self.kind} {self.name!r}"
        if self.suggestions:
            msg += f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?"
        if len(self.choices) <= 30:
            msg += f" (valid: {', '.join(self.choices)})"
        return msg

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return self.message


class Registry(Generic[T]):
    """A named collection of entries: ``register`` (also as a decorator), ``get``, ``names``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj`` returns a decorator."""

        def _add(o: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = o
            return o

        return _add(obj) if obj is not None else _add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self._entries)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)
