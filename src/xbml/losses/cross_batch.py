"""The cross-batch metric learning regulariser (XML), method.md sections 1-3.

A batch is two sub-batches B1, B2 with disjoint classes (rows [:split] and
[split:]). Prototypes fitted to one sub-batch (a ridge regression from its
histograms P to its targets T) must express the other:

    Omega_1 = Omega(P_1, T_1),  Omega_2 = Omega(P_2, T_2)
    T_hat_1 = P_1 Omega_2,      T_hat_2 = P_2 Omega_1

and a prediction loss scores the cross-expressed targets against the true
labels. The module returns only that term (with its diagnostics); the trainer
combines it with the base loss as (1 - w) * base + w * xml.

Everything here runs in float32, also under bf16 autocast: the assignment logits,
the products P Omega and the proxy logits are where bf16's 8-bit mantissa would
decide the result (the authors' code is float32 throughout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xbml.losses.ridge import ridge_solve
from xbml.models.prototype_pooling import PrototypeAssignment
from xbml.regularizers.xml_block import FEATURES, PREDICTION_LOSSES, TARGETS



@dataclass
class XmlTerms:
    """The prediction loss (with gradient) and two detached diagnostics of the assignment."""

    loss: torch.Tensor
    assign_entropy: torch.Tensor  # mean per-location entropy of a_i, nats (at most ln K)
    effective_prototypes: torch.Tensor  # exp(entropy of the batch's mean histogram), 1..K


def cross_expressed_targets(P: torch.Tensor, T: torch.Tensor, split: int, lam: float) -> torch.Tensor:
    """Rows of B1 expressed with B2's prototypes and rows of B2 with B1's, in batch order."""
    P1, P2, T1, T2 = P[:split], P[split:], T[:split], T[split:]
    omega_1 = ridge_solve(P1, T1, lam)
    omega_2 = ridge_solve(P2, T2, lam)
    return torch.cat([P1.to(omega_2.dtype) @ omega_2, P2.to(omega_1.dtype) @ omega_1])


def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy in nats of distributions along `dim` (0 log 0 = 0)."""
    return -(p * p.clamp_min(1e-30).log()).sum(dim)


def he_normal_class_vectors(num_classes: int, dim: int, generator: torch.Generator | None) -> torch.Tensor:
    """std sqrt(2 / C) (He init over the class axis, as the authors' class embeddings): the logits
    are not normalised, so this scale sets the initial softmax sharpness."""
    return torch.randn(num_classes, dim, generator=generator) * math.sqrt(2.0 / num_classes)


def chance_loss(num_classes: int) -> float:
    """The proxy-softmax loss of a uniform guess over the training classes, ln C."""
    return math.log(num_classes)


class CrossBatchRegularizer(nn.Module):
    """XML: per-location features -> histograms -> cross-expressed targets -> prediction loss.

    features ``projected`` (default, the authors'): locations z_i = W_e x_i in embedding space;
    ``backbone`` (ablation): the raw backbone locations (see xbml.models.prototype_pooling).
    target ``class_proxy``: T = learnable class vectors (num_classes x D) gathered by label.
    target ``embedding``: T = the image's pooled features (GAP of the assigned locations).
    prediction ``proxy_softmax``: logits = proxy_scale * <class vectors, t_hat>, softmax over
    all training classes (no normalisation, as in the authors' code).
    prediction ``base``: the base loss on normalize(t_hat) with the sub-batch's labels.
    """

    def __init__(
        self,
        feature_dim: int,
        embedding_dim: int,
        num_classes: int,
        num_prototypes: int = 32,
        assignment_scale: float = 10.0,
        ridge_lambda: float = 0.05,
        target: str = "class_proxy",
        prediction_loss: str = "proxy_softmax",
        proxy_scale: float = 9.5,
        features: str = "projected",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        for name, value, valid in (
            ("target", target, TARGETS), ("prediction_loss", prediction_loss, PREDICTION_LOSSES),
            ("features", features, FEATURES),
        ):
            if value not in valid:
                raise ValueError(f"{name} must be one of {valid}, got {value!r}")
        self.target = target
        self.prediction_loss = prediction_loss
        self.features = features
        self.ridge_lambda = ridge_lambda
        self.proxy_scale = proxy_scale
        self.num_classes = num_classes
        location_dim = embedding_dim if features == "projected" else feature_dim
        self.assign = PrototypeAssignment(location_dim, num_prototypes, assignment_scale, features, generator)
        self.class_vectors = None
        if target == "class_proxy" or prediction_loss == "proxy_softmax":
            self.class_vectors = nn.Parameter(he_normal_class_vectors(num_classes, embedding_dim, generator))

    @property
    def chance(self) -> float | None:
        """ln C for the proxy softmax; None where no uniform-guess level is defined."""
        return chance_loss(self.num_classes) if self.prediction_loss == "proxy_softmax" else None

    def targets(self, pooled: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.target == "class_proxy":
            return self.class_vectors[labels]
        return pooled.float()

    def forward(
        self,
        histograms: torch.Tensor,
        targets: torch.Tensor,
        labels: torch.Tensor,
        split: int,
        head: nn.Module | None = None,
        base_loss: nn.Module | None = None,
    ) -> torch.Tensor:
        first, second = labels[:split], labels[split:]
        if (first[:, None] == second[None, :]).any():
            raise ValueError("XML needs class-disjoint halves: the two sub-batches share a class")
        t_hat = cross_expressed_targets(histograms.float(), targets.float(), split, self.ridge_lambda)
        if self.target == "embedding" and self.features == "backbone":
            # the targets live in backbone space: the head brings them to embedding space
            if head is None:
                raise ValueError("target 'embedding' on backbone features needs the embedding head")
            t_hat = head(t_hat, normalize=False)
        if self.prediction_loss == "proxy_softmax":
            logits = self.proxy_scale * t_hat @ self.class_vectors.float().t()
            # mean over all rows = mean of the two sub-batch means: the halves are equal in size
            return F.cross_entropy(logits, labels)
        if base_loss is None:
            raise ValueError("prediction_loss 'base' needs the base loss")
        z = F.normalize(t_hat, dim=-1)
        halves = (z[:split], labels[:split]), (z[split:], labels[split:])
        return sum(base_loss(zi, yi) for zi, yi in halves) / 2

    def from_output(self, out, labels: torch.Tensor, split: int, head=None, base_loss=None) -> XmlTerms:
        """The loss term and diagnostics straight from a model's output (see ModelOutput)."""
        with torch.autocast(device_type=out.feature_map.device.type, enabled=False):
            locations = self.assign.locations(out.feature_map, head)
            assignments = self.assign.assignments(locations)
            histograms = assignments.mean(dim=1)
            pooled = locations.mean(dim=1) if self.features == "projected" else out.pooled
            loss = self.forward(histograms, self.targets(pooled, labels), labels, split, head, base_loss)
            with torch.no_grad():
                diagnostics = entropy(assignments).mean(), entropy(histograms.mean(dim=0)).exp()
        return XmlTerms(loss, *diagnostics)
