"""Losses: base DML losses (from pytorch-metric-learning) and the XML regulariser.

The names below are imported on first use, so that `xbml.losses.catalog` (what config validation
reads) is importable without torch."""

from __future__ import annotations

from xbml.lazy_exports import lazy_exports

_EXPORTS = {
    "BASE_LOSSES": "xbml.losses.catalog",
    "BaseLoss": "xbml.losses.base_losses",
    "build_base_loss": "xbml.losses.base_losses",
    "CrossBatchRegularizer": "xbml.losses.cross_batch",
    "cross_expressed_targets": "xbml.losses.cross_batch",
    "ridge_solve": "xbml.losses.ridge",
}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
