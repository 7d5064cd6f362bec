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

# modules that register datasets; imported on first lookup so `python -m xbml` stays light
_MODULES = (
    "xbml.datasets.glyphs",
    "xbml.datasets.cub",
    "xbml.datasets.cars",
    "xbml.datasets.sop",
    "xbml.datasets.inshop",
)


def _load_all() -> None:
    for module in _MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def get_dataset(name: str):
    _load_all()
    return DATASETS.get(name)


def dataset_names() -> list[str]:
    _load_all()
    return DATASETS.names()
