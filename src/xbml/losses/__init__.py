"""Losses: base DML losses (from pytorch-metric-learning) and the XML regulariser."""

from xbml.losses.base_losses import BASE_LOSSES, BaseLoss, build_base_loss
from xbml.losses.cross_batch import CrossBatchRegularizer, cross_expressed_targets
from xbml.losses.ridge import ridge_solve

__all__ = [
    "BASE_LOSSES",
    "BaseLoss",
    "build_base_loss",
    "CrossBatchRegularizer",
    "cross_expressed_targets",
    "ridge_solve",
]
