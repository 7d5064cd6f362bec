"""The cross-batch metric learning regulariser (XML), method.md sections 2-3.

A batch is two sub-batches B1, B2 with disjoint classes (rows [:split] and
[split:]). Prototypes fitted to one sub-batch (a ridge regression from its
histograms P to its targets T) must express the other:

    Omega_1 = Omega(P_1, T_1),  Omega_2 = Omega(P_2, T_2)
    T_hat_1 = P_1 Omega_2,      T_hat_2 = P_2 Omega_1

and a prediction loss scores the cross-expressed targets against the true
labels. The module returns only that term; the trainer combines it with the
base loss as (1 - w) * base + w * xml.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xbml.losses.ridge import ridge_solve
from xbml.models.prototype_pooling import PrototypeAssignment

TARGETS = ("class_proxy", "embedding")
PREDICTION_LOSSES = ("proxy_softmax", "base")


def cross_expressed_targets(P: torch.Tensor, T: torch.Tensor, split: int, lam: float) -> torch.Tensor:
    """Rows of B1 expressed with B2's prototypes and rows of B2 with B1's, in batch order."""
    P1, P2, T1, T2 = P[:split], P[split:], T[:split], T[split:]
    omega_1 = ridge_solve(P1, T1, lam)
    omega_2 = ridge_solve(P2, T2, lam)
    return torch.cat([P1.to(omega_2.dtype) @ omega_2, P2.to(omega_1.dtype) @ omega_1])


class CrossBatchRegularizer(nn.Module):
    """XML: histograms of the feature map -> cross-expressed targets -> prediction loss.

    target ``class_proxy``: T = learnable class vectors (num_classes x D) gathered by label.
    target ``embedding``: T = the pooled features f (the "GAP as a convex combination" reading);
    the cross-expressed features pass through the embedding head before prediction.
    prediction ``proxy_softmax``: logits = proxy_scale * <class vectors, t_hat>, softmax over
    all training classes (no normalisation, as in the authors' code).
    prediction ``base``: the base loss on normalize(t_hat) (or the head's output) with the labels.
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
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if prediction_loss not in PREDICTION_LOSSES:
            raise ValueError(f"prediction_loss must be one of {PREDICTION_LOSSES}, got {prediction_loss!r}")
        self.target = target
        self.prediction_loss = prediction_loss
        self.ridge_lambda = ridge_lambda
        self.proxy_scale = proxy_scale
        self.assign = PrototypeAssignment(feature_dim, num_prototypes, assignment_scale, generator=generator)
        self.class_vectors = None
        if target == "class_proxy" or prediction_loss == "proxy_softmax":
            init = torch.randn(num_classes, embedding_dim, generator=generator)
            self.class_vectors = nn.Parameter(F.normalize(init, dim=1))

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
        t_hat = cross_expressed_targets(histograms.float(), targets, split, self.ridge_lambda)
        if self.target == "embedding":
            if head is None:
                raise ValueError("target 'embedding' needs the embedding head to map features to embeddings")
            z = head(t_hat, normalize=self.prediction_loss == "base")
        else:
            z = F.normalize(t_hat, dim=-1) if self.prediction_loss == "base" else t_hat
        if self.prediction_loss == "proxy_softmax":
            logits = self.proxy_scale * z.float() @ self.class_vectors.float().t()
            # mean over all rows = mean of the two sub-batch means: the halves are equal in size
            return F.cross_entropy(logits, labels)
        if base_loss is None:
            raise ValueError("prediction_loss 'base' needs the base loss")
        halves = (z[:split], labels[:split]), (z[split:], labels[split:])
        return sum(base_loss(zi, yi) for zi, yi in halves) / 2

    def from_output(self, out, labels: torch.Tensor, split: int, head=None, base_loss=None) -> torch.Tensor:
        """Convenience: the loss term straight from a model's output."""
        return self.forward(self.assign(out.feature_map), self.targets(out.pooled, labels), labels, split, head, base_loss)


def build_regularizer(xml_cfg: dict, feature_dim: int, embedding_dim: int, num_classes: int, seed: int) -> CrossBatchRegularizer:
    # its own generator: creating XML parameters must not move the global RNG, so a
    # baseline and an XML run with the same seed start from the same network
    generator = torch.Generator().manual_seed(seed + 7919)
    return CrossBatchRegularizer(
        feature_dim=feature_dim,
        embedding_dim=embedding_dim,
        num_classes=num_classes,
        num_prototypes=xml_cfg["num_prototypes"],
        assignment_scale=xml_cfg["assignment_scale"],
        ridge_lambda=xml_cfg["ridge_lambda"],
        target=xml_cfg["target"],
        prediction_loss=xml_cfg["prediction_loss"],
        proxy_scale=xml_cfg["proxy_scale"],
        generator=generator,
    )
