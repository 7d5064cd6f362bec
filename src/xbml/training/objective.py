"""Everything with trainable parameters in one module, so DDP and checkpoints see one state.

total = (1 - w) * base + w * xml   (method.md section 3)
"""

from __future__ import annotations

import torch
from torch import nn


class Objective(nn.Module):
    def __init__(self, model: nn.Module, base_loss: nn.Module, regularizer: nn.Module | None, weight: float):
        super().__init__()
        self.model = model
        self.base_loss = base_loss
        self.regularizer = regularizer
        self.weight = weight

    def forward(self, images: torch.Tensor, labels: torch.Tensor, split: int) -> dict[str, torch.Tensor]:
        out = self.model(images)
        base = self.base_loss(out.embedding, labels)
        terms = {"loss_base": base}
        if self.regularizer is None:
            terms["loss"] = base
            return terms
        xml = self.regularizer.from_output(out, labels, split, head=self.model.head, base_loss=self.base_loss)
        terms["loss_xml"] = xml.loss
        terms["xml_assign_entropy"] = xml.assign_entropy
        terms["xml_effective_prototypes"] = xml.effective_prototypes
        terms["loss"] = (1.0 - self.weight) * base + self.weight * xml.loss
        return terms
