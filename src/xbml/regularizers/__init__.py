"""Regularisers: terms added to the base DML loss during training, as plugins.

    from xbml.regularizers import REGULARIZERS, Regularizer

XML (the cross-batch metric learning regulariser, `xml`) and cross-batch memory (XBM, `xbm`) are
registered here; see xbml.regularizers.base for what a regulariser declares. Importing this package
does not import torch (a config is validated against `blocks()` alone); the names of `base` load
on first use.
"""

from xbml.regularizers.block import RegularizerBlock
from xbml.regularizers.registry import REGULARIZERS, blocks, build_regularizers, registered

_FROM_BASE = ("Batch", "BuildContext", "Regularizer", "summarise")

__all__ = ["REGULARIZERS", "RegularizerBlock", "blocks", "build_regularizers", "registered", *_FROM_BASE]


def __getattr__(name: str):
    if name in _FROM_BASE:
        from xbml.regularizers import base

        return getattr(base, name)
    raise AttributeError(f"module 'xbml.regularizers' has no attribute {name!r}")
