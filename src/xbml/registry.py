"""Name -> component registries, so a config names a component and the code finds it.

A component is registered eagerly (`register`, as a decorator) or declared by where it lives
(`declare(name, "package.module:Attribute")`), imported on its first `get`. Declared names cost
no import: the workflow validates a config's component names while it parses the DAG, and a
torch import there would cost every `snakemake` call (and every Slurm job) seconds of CPU.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from xbml.errors import ConfigError

T = TypeVar("T")


class _Declared:
    def __init__(self, target: str):
        module, _, attribute = target.partition(":")
        if not module or not attribute:
            raise ValueError(f"a declared component is 'package.module:Attribute', got {target!r}")
        self.module, self.attribute = module, attribute

    def load(self):
        return getattr(importlib.import_module(self.module), self.attribute)


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T | _Declared] = {}

    def _add(self, name: str, item) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self._add(name, obj)
            return obj

        return decorator

    def declare(self, name: str, target: str) -> None:
        """`name` is the object at `target` ("package.module:Attribute"), imported on first use."""
        self._add(name, _Declared(target))

    def get(self, name: str) -> T:
        try:
            item = self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(sorted(self._items))}"
            ) from None
        if isinstance(item, _Declared):
            item = self._items[name] = item.load()
        return item

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
