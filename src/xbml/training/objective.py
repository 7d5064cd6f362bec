"""Everything with trainable parameters in one module, so DDP and checkpoints see one state.

total = (1 - sum_r w_r) * base + sum_r w_r * term_r   (method.md section 3 for XML alone:
(1 - w) * base + w * xml), over the regularisers the config activates (xbml.regularizers).
"""

from __future__ import annotations

import torch
from torch import nn

from xbml.regularizers import Batch, Regularizer


class Objective(nn.Module):
    def __init__(self, model: nn.Module, base_loss: nn.Module, regularizers: dict[str, Regularizer] | None = None,
                 weights: dict[str, float] | None = None):
        super().__init__()
        self.model = model
        self.base_loss = base_loss
        self.regularizers = nn.ModuleDict(regularizers or {})
        self.weights = dict(weights or {})

    def forward(self, images: torch.Tensor, labels: torch.Tensor, split: int, iteration: int = 0) -> dict[str, torch.Tensor]:
        """The loss and every logged term: loss_base, loss_<name> and <name>_<diagnostic> per regulariser."""
        out = self.model(images)
        base = self.base_loss(out.embedding, labels)
        terms = {"loss_base": base}
        if not self.regularizers:
            terms["loss"] = base
            return terms
        batch = Batch(out, labels, split, iteration, self.model.head, self.base_loss)
        total = (1.0 - sum(self.weights[name] for name in self.regularizers)) * base
        for name, regularizer in self.regularizers.items():
            own = regularizer(batch)
            terms[f"loss_{name}"] = own.pop("loss")
            terms.update({f"{name}_{key}": value for key, value in own.items()})
            total = total + self.weights[name] * terms[f"loss_{name}"]
        terms["loss"] = total
        return terms
