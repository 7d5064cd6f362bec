"""Regularisers: terms added to the base DML loss during training, as plugins.

    from xbml.regularizers import REGULARIZERS, Regularizer

XML (the cross-batch metric learning regulariser, `xml`) and cross-batch memory (XBM, `xbm`) are
registered here; see xbml.regularizers.base for what a regulariser declares.
"""

from xbml.regularizers.base import Batch, BuildContext, Regularizer, summarise
from xbml.regularizers.registry import REGULARIZERS, build_regularizers, registered

__all__ = ["Batch", "BuildContext", "REGULARIZERS", "Regularizer", "build_regularizers", "registered", "summarise"]
