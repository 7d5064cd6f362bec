"""Base DML losses: thin adapters around pytorch-metric-learning, chosen by name.

Each entry declares its explicit defaults and, where the literature pairs it
with one, its default miner (`loss.miner: auto`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from xbml.errors import ConfigError
from xbml.registry import Registry

BASE_LOSSES: Registry = Registry("loss")
MINERS: Registry = Registry("miner")


@dataclass
class LossSpec:
    factory: type
    defaults: dict = field(default_factory=dict)
    default_miner: str | None = None
    needs_classes: bool = False


def _pml():
    from pytorch_metric_learning import losses, miners

    return losses, miners


def _register_all() -> None:
    if BASE_LOSSES.names():
        return
    losses, miners = _pml()
    BASE_LOSSES.register("contrastive")(
        LossSpec(losses.ContrastiveLoss, {"pos_margin": 0.0, "neg_margin": 0.5}, "pair_margin")
    )
    BASE_LOSSES.register("triplet")(LossSpec(losses.TripletMarginLoss, {"margin": 0.1}, "triplet_semihard"))
    BASE_LOSSES.register("multi_similarity")(
        LossSpec(losses.MultiSimilarityLoss, {"alpha": 2.0, "beta": 50.0, "base": 0.5}, "multi_similarity")
    )
    BASE_LOSSES.register("proxy_nca")(LossSpec(losses.ProxyNCALoss, {"softmax_scale": 9.0}, None, True))
    BASE_LOSSES.register("proxy_anchor")(
        LossSpec(losses.ProxyAnchorLoss, {"margin": 0.1, "alpha": 32.0}, None, True)
    )
    BASE_LOSSES.register("ntxent")(LossSpec(losses.NTXentLoss, {"temperature": 0.07}))
    MINERS.register("pair_margin")((miners.PairMarginMiner, {"pos_margin": 0.0, "neg_margin": 0.5}))
    MINERS.register("triplet_semihard")((miners.TripletMarginMiner, {"margin": 0.1, "type_of_triplets": "semihard"}))
    MINERS.register("triplet_hard")((miners.TripletMarginMiner, {"margin": 0.1, "type_of_triplets": "hard"}))
    MINERS.register("multi_similarity")((miners.MultiSimilarityMiner, {"epsilon": 0.1}))


def loss_names() -> list[str]:
    _register_all()
    return BASE_LOSSES.names()


def miner_names() -> list[str]:
    _register_all()
    return MINERS.names()


class BaseLoss(nn.Module):
    """A pml loss with its optional miner: `loss(embeddings, labels)` -> scalar."""

    def __init__(self, loss: nn.Module, miner: nn.Module | None):
        super().__init__()
        self.loss = loss
        self.miner = miner

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings = embeddings.float()  # pml losses are not written for bf16
        tuples = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, tuples)


def build_base_loss(loss_cfg: dict, num_classes: int, embedding_dim: int) -> BaseLoss:
    _register_all()
    spec: LossSpec = BASE_LOSSES.get(loss_cfg["name"])
    params = {**spec.defaults, **loss_cfg["params"]}
    if spec.needs_classes:
        params.update(num_classes=num_classes, embedding_size=embedding_dim)
    try:
        loss = spec.factory(**params)
    except TypeError as exc:
        raise ConfigError(f"loss.params for {loss_cfg['name']!r} rejected by pytorch-metric-learning: {exc}") from None
    miner_name = loss_cfg["miner"]
    if miner_name == "auto":
        miner_name = spec.default_miner
    miner = None
    if miner_name not in (None, "none"):
        factory, defaults = MINERS.get(miner_name)
        try:
            miner = factory(**{**defaults, **loss_cfg["miner_params"]})
        except TypeError as exc:
            raise ConfigError(f"loss.miner_params for {miner_name!r} rejected: {exc}") from None
    return BaseLoss(loss, miner)
