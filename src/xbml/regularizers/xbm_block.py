"""XBM's config block (xbml.regularizers.block): memory size, start iteration, and the check that
the base loss is one XBM can wrap (pair-based) with a memory of at least one batch."""

from __future__ import annotations

from xbml.errors import ConfigError
from xbml.regularizers.block import RegularizerBlock


def memory_class():
    """pytorch-metric-learning's XBM wrapper, imported only where a run uses it (it imports torch)."""
    from pytorch_metric_learning.losses import CrossBatchMemory

    return CrossBatchMemory


class XbmBlock(RegularizerBlock):
    name = "xbm"
    label = "XBM memory loss"
    defaults = {
        "memory_size": 1024,  # embeddings kept (XBM's M)
        "start_iteration": 0,  # steps before the memory is used and filled
    }
    diagnostics = {"memory_fill": "share of the memory filled"}

    @classmethod
    def domains(cls):
        from xbml.config import AT_LEAST_ONE, NON_NEGATIVE

        intervals, choices = super().domains()
        intervals.update(memory_size=AT_LEAST_ONE, start_iteration=NON_NEGATIVE)
        return intervals, choices

    @classmethod
    def check(cls, cfg: dict) -> None:
        block = cfg[cls.name]
        if not cls.active(block):
            return
        for key in ("memory_size", "start_iteration"):
            if isinstance(block[key], bool) or not isinstance(block[key], int):
                raise ConfigError(f"config key 'xbm.{key}' is {block[key]!r}; it must be an integer")
        from xbml.losses.catalog import BASE_LOSSES, loss_names

        factory = BASE_LOSSES.get(cfg["loss"]["name"]).factory
        supported = memory_class().supported_losses()
        if factory not in supported:
            pair = [n for n in loss_names() if BASE_LOSSES.get(n).factory in supported]
            raise ConfigError(
                f"xbm compares the batch with remembered embeddings through a pair-based loss, but loss.name is "
                f"{cfg['loss']['name']!r}; use one of {', '.join(pair)} (or xbm.weight: 0)"
            )
        batch = cfg["sampler"]["classes_per_batch"] * cfg["sampler"]["images_per_class"]
        if block["memory_size"] < batch:
            raise ConfigError(f"config key 'xbm.memory_size' is {block['memory_size']}, smaller than one batch "
                              f"({batch} images); give at least {batch}")
