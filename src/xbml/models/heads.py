"""Embedding head: e = normalize(W_e f + b_e)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EmbeddingHead(nn.Module):
    def __init__(self, in_features: int, embedding_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_features, embedding_dim)

    def forward(self, pooled: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        e = self.linear(pooled)
        return F.normalize(e, dim=-1) if normalize else e
