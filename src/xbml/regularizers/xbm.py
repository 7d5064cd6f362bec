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

from xbml.regularizers.base import Batch, BuildContext, Regularizer, refuse_several_processes
from xbml.regularizers.registry import REGULARIZERS
from xbml.regularizers.xbm_block import XbmBlock, memory_class


@REGULARIZERS.register("xbm")
class CrossBatchMemoryRegularizer(XbmBlock, Regularizer):
    @classmethod
    def build(cls, block: dict, context: BuildContext) -> CrossBatchMemoryRegularizer:
        refuse_several_processes(
            "xbm", context.world_size,
            "each process would keep its own memory and DDP's buffer broadcast would overwrite them with rank 0's")
        from xbml.losses.base_losses import build_base_loss

        # a loss instance of its own, configured as the base loss, with the base loss's miner
        pair = build_base_loss(context.cfg["loss"], context.num_classes, context.embedding_dim)
        memory = memory_class()(pair.loss, context.embedding_dim, block["memory_size"], miner=pair.miner)
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
