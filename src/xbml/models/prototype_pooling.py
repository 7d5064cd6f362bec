"""GAP as a convex combination of prototypes (method.md section 1).

Each location x_i of a feature map is softly assigned to K prototypes,
a_i = softmax_k(s * cos(x_i, w_k)), and the image's histogram is the mean
assignment pi = (1/n) sum_i a_i, a point on the simplex.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PrototypeAssignment(nn.Module):
    def __init__(self, feature_dim: int, num_prototypes: int = 32, scale: float = 10.0, generator=None):
        super().__init__()
        self.scale = scale
        init = torch.randn(num_prototypes, feature_dim, generator=generator)
        self.prototypes = nn.Parameter(F.normalize(init, dim=1))

    def assignments(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(b, d, h, w) -> (b, K, h, w) soft assignments; rows sum to 1 over K."""
        b, d, h, w = feature_map.shape
        x = F.normalize(feature_map.flatten(2).transpose(1, 2).float(), dim=-1)  # (b, n, d)
        protos = F.normalize(self.prototypes.float(), dim=-1)
        logits = self.scale * x @ protos.t()  # (b, n, K)
        return logits.softmax(dim=-1).transpose(1, 2).reshape(b, -1, h, w)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(b, d, h, w) -> histograms (b, K)."""
        return self.assignments(feature_map).flatten(2).mean(dim=2)
