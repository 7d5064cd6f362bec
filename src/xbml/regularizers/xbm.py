"""Cross-batch memory (XBM; Wang et al., CVPR 2020) as a regulariser: the batch's embeddings are
also compared with a queue of the last `memory_size` embeddings of earlier batches, through
pytorch-metric-learning's `CrossBatchMemory` around a pair-based loss (the run's base loss, with
its miner).

What the library leaves to us (pytorch-metric-learning 2.9):
- only the memory tensors are buffers; `queue_idx` and `has_been_filled` are plain attributes,
  so they travel here as the module's extra state (a resumed run continues the same queue);
- no start iteration: before `start_iteration` the term is 0 and nothing is enqueued (XBM's
  warm-up, as in the paper's code);
- a miner must be given to `CrossBatchMemory(miner=...)` (tuples mined on the batch alone would
  be read as memory positions);
- under DDP the buffer broadcast would overwrite every rank's memory with rank 0's: refused.
The memory keeps only what this module enqueues: XML's `prediction_loss: base` calls the plain
base loss, never this one.
"""

from __future__ import annotations

import torch

from xbml.errors import ConfigError
from xbml.regularizers.base import Batch, BuildContext, Regularizer, refuse_several_processes
from xbml.regularizers.registry import REGULARIZERS


def _memory_class():
    from pytorch_metric_learning.losses import CrossBatchMemory

    return CrossBatchMemory


@REGULARIZERS.register("xbm")
class CrossBatchMemoryRegularizer(Regularizer):
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
        from xbml.losses.base_losses import BASE_LOSSES, loss_names

        loss_names()  # registers the base losses
        factory = BASE_LOSSES.get(cfg["loss"]["name"]).factory
        supported = _memory_class().supported_losses()
        if factory.__name__ not in supported:
            pair = [n for n in loss_names() if BASE_LOSSES.get(n).factory.__name__ in supported]
            raise ConfigError(
                f"xbm compares the batch with remembered embeddings through a pair-based loss, but loss.name is "
                f"{cfg['loss']['name']!r}; use one of {', '.join(pair)} (or xbm.weight: 0)"
            )
        batch = cfg["sampler"]["classes_per_batch"] * cfg["sampler"]["images_per_class"]
        if block["memory_size"] < batch:
            raise ConfigError(f"config key 'xbm.memory_size' is {block['memory_size']}, smaller than one batch "
                              f"({batch} images); give at least {batch}")

    @classmethod
    def build(cls, block: dict, context: BuildContext) -> CrossBatchMemoryRegularizer:
        refuse_several_processes(
            "xbm", context.world_size,
            "each process would keep its own memory and DDP's buffer broadcast would overwrite them with rank 0's")
        from xbml.losses.base_losses import build_base_loss

        # a loss instance of its own, configured as the base loss, with the base loss's miner
        pair = build_base_loss(context.cfg["loss"], context.num_classes, context.embedding_dim)
        memory = _memory_class()(pair.loss, context.embedding_dim, block["memory_size"], miner=pair.miner)
        return cls(memory, block["start_iteration"])

    def __init__(self, memory, start_iteration: int):
        super().__init__()
        self.memory = memory
        self.start_iteration = start_iteration

    def forward(self, batch: Batch) -> dict:
        embeddings = batch.output.embedding.float()
        if batch.iteration < self.start_iteration:
            loss = embeddings.new_zeros(())
        else:
            loss = self.memory(embeddings, batch.labels)
        return {"loss": loss, "memory_fill": torch.tensor(self.filled)}

    @property
    def filled(self) -> float:
        m = self.memory
        return 1.0 if m.has_been_filled else m.queue_idx / m.memory_size

    def get_extra_state(self) -> dict:
        return {"queue_idx": int(self.memory.queue_idx), "has_been_filled": bool(self.memory.has_been_filled)}

    def set_extra_state(self, state: dict) -> None:
        self.memory.queue_idx = int(state["queue_idx"])
        self.memory.has_been_filled = bool(state["has_been_filled"])

    def facts(self) -> dict:
        m = self.memory
        return {"memory_size": m.memory_size, "start_iteration": self.start_iteration,
                "loss": type(m.loss).__name__, "miner": type(m.miner).__name__ if m.miner is not None else None}
