"""GAP as a convex combination of prototypes (method.md section 1): soft prototype assignment.

Each location of a feature map is softly assigned to K prototypes and the image's histogram
is the mean assignment, pi = (1/n) sum_i a_i, a point on the simplex. Two formulations:

- ``projected`` (the authors' pooling layer, method.md section 1): the locations are the
  embedding head's linear map applied per location, z_i = W_e x_i, "Lipschitz"-normalised
  (divided by their norm only where it exceeds 1), scored against the rows u_k of an
  unnormalised, bias-free linear map: a_i = softmax_k(s <N(z_i), u_k>). The rows' norms act as
  learnable temperatures; XML's gradient reaches the head and the backbone through z_i.
- ``backbone`` (an ablation, xbml's first formulation): the raw backbone locations x_i by true
  cosine to unit-norm prototypes, a_i = softmax_k(s cos(x_i, w_k)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xbml.regularizers.xml_block import FEATURES  # the block states the valid values once


def lipschitz_normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """x / max(||x||, 1): long vectors are put on the unit sphere, short ones pass unchanged.

    Autograd of the clamp gives the rule the authors state for the gradient: the projection
    onto the sphere's tangent for long vectors, the identity for short ones.
    """
    return x / x.norm(dim=dim, keepdim=True).clamp_min(1.0)


def glorot_uniform(rows: int, cols: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Glorot/Xavier uniform init of a (rows x cols) map, drawn from `generator` (the global RNG
    must not move: a baseline and an XML run with one seed start from the same network)."""
    bound = math.sqrt(6.0 / (rows + cols))
    return (torch.rand(rows, cols, generator=generator) * 2 - 1) * bound


def location_features(feature_map: torch.Tensor) -> torch.Tensor:
    """(b, d, h, w) -> (b, n, d) in float32, one row per location."""
    return feature_map.flatten(2).transpose(1, 2).float()


class PrototypeAssignment(nn.Module):
    """Feature maps -> the locations it assigns (b, n, dim) -> soft assignments (b, n, K) and
    histograms (b, K)."""

    def __init__(
        self, dim: int, num_prototypes: int = 32, scale: float = 10.0, features: str = "projected", generator=None
    ):
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        self.scale = scale
        self.features = features
        if features == "projected":
            init = glorot_uniform(num_prototypes, dim, generator)
        else:
            init = F.normalize(torch.randn(num_prototypes, dim, generator=generator), dim=1)
        self.prototypes = nn.Parameter(init)

    def locations(self, feature_map: torch.Tensor, head: nn.Module | None) -> torch.Tensor:
        """(b, d, h, w) -> (b, n, dim): the locations this formulation assigns."""
        x = location_features(feature_map)
        if self.features == "backbone":
            return x
        if head is None:
            raise ValueError("features 'projected' needs the embedding head (its W_e projects each location)")
        return x @ head.linear.weight.float().t()  # W_e x_i, no bias: GAP of it is W_e GAP(x)

    def maps(self, feature_map: torch.Tensor, head: nn.Module | None) -> torch.Tensor:
        """(b, d, h, w) -> (b, K, h, w) soft assignments in float32, for pictures of the prototypes."""
        b, _, h, w = feature_map.shape
        with torch.autocast(device_type=feature_map.device.type, enabled=False):
            a = self.assignments(self.locations(feature_map, head))
        return a.transpose(1, 2).reshape(b, -1, h, w)

    def logits(self, locations: torch.Tensor) -> torch.Tensor:
        protos = self.prototypes.float()
        if self.features == "projected":
            return self.scale * lipschitz_normalize(locations.float()) @ protos.t()
        return self.scale * F.normalize(locations.float(), dim=-1) @ F.normalize(protos, dim=-1).t()

    def assignments(self, locations: torch.Tensor) -> torch.Tensor:
        """(b, n, dim) -> (b, n, K); every row sums to 1 over K."""
        return self.logits(locations).softmax(dim=-1)

    def forward(self, locations: torch.Tensor) -> torch.Tensor:
        """(b, n, dim) -> histograms (b, K)."""
        return self.assignments(locations).mean(dim=1)
