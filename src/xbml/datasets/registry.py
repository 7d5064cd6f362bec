"""Dataset registry: a name in the config -> the :class:`xbml.datasets.base.Dataset` subclass that
fetches its raw files and prepares its manifest.

``xbml fetch`` calls ``fetch(raw_dir, sources=..., seed=..., progress=...)``: make ``raw_dir``
hold the verified raw files (download, or generate for the embedded dataset, where `seed` is
the generation seed); a no-op when already there. ``xbml prepare`` calls
``prepare(raw_dir, out_dir, val_fraction=..., seed=...)``: write the common manifest (see
:mod:`xbml.datasets.manifest`) into ``out_dir``.
"""

from __future__ import annotations

import importlib

from xbml.registry import Registry

DATASETS: Registry = Registry("dataset")

# the module that registers each dataset, imported on its first lookup: `python -m xbml` stays
# light, and fetching the glyphs does not import torch with the real datasets' image store
_MODULES = {
    "glyphs": "xbml.datasets.glyphs",
    "cub200": "xbml.datasets.cub",
    "cars196": "xbml.datasets.cars",
    "sop": "xbml.datasets.sop",
    "inshop": "xbml.datasets.inshop",
}


def _load(module: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise


def _load_all() -> None:
    for module in _MODULES.values():
        _load(module)


def get_dataset(name: str):
    if name in _MODULES:
        _load(_MODULES[name])
    else:  # an unknown name: the error lists every registered one
        _load_all()
    return DATASETS.get(name)


def dataset_names() -> list[str]:
    """Every known name, without importing the datasets' modules (a workflow checks its config
    against these names when it parses, and a real dataset's module imports torch)."""
    return sorted(set(_MODULES) | set(DATASETS.names()))
