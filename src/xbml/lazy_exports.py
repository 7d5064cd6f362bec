"""A package's public names imported on first use (PEP 562), so that importing one torch-free
module of the package does not import torch through the package's __init__."""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """exports: name -> the module that defines it; returns the package's `__getattr__`."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
