"""The base losses and miners a config may name, torch-free: each entry names its
pytorch-metric-learning class, imported only when a loss is built or its parameters are checked.

Each loss declares its explicit defaults and, where the literature pairs it with one, its default
miner (`loss.miner: auto`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import ClassVar

from xbml.registry import Registry


@dataclass(frozen=True)
class _PmlEntry:
    """An entry that names a class of one pytorch-metric-learning module, imported by `load`."""

    factory: str  # the class's name in `module`
    module: ClassVar[str]

    def load(self) -> type:
        return getattr(importlib.import_module(self.module), self.factory)


@dataclass(frozen=True)
class LossSpec(_PmlEntry):
    module: ClassVar[str] = "pytorch_metric_learning.losses"
    defaults: dict = field(default_factory=dict)
    default_miner: str | None = None
    needs_classes: bool = False


@dataclass(frozen=True)
class MinerSpec(_PmlEntry):
    module: ClassVar[str] = "pytorch_metric_learning.miners"
    defaults: dict = field(default_factory=dict)


BASE_LOSSES: Registry = Registry("loss")
MINERS: Registry = Registry("miner")

for _name, _spec in {
    "contrastive": LossSpec("ContrastiveLoss", {"pos_margin": 0.0, "neg_margin": 0.5}, "pair_margin"),
    "triplet": LossSpec("TripletMarginLoss", {"margin": 0.1}, "triplet_semihard"),
    "multi_similarity": LossSpec("MultiSimilarityLoss", {"alpha": 2.0, "beta": 50.0, "base": 0.5}, "multi_similarity"),
    "proxy_nca": LossSpec("ProxyNCALoss", {"softmax_scale": 9.0}, None, True),
    "proxy_anchor": LossSpec("ProxyAnchorLoss", {"margin": 0.1, "alpha": 32.0}, None, True),
    "ntxent": LossSpec("NTXentLoss", {"temperature": 0.07}),
}.items():
    BASE_LOSSES.register(_name)(_spec)

for _name, _spec in {
    "pair_margin": MinerSpec("PairMarginMiner", {"pos_margin": 0.0, "neg_margin": 0.5}),
    "triplet_semihard": MinerSpec("TripletMarginMiner", {"margin": 0.1, "type_of_triplets": "semihard"}),
    "triplet_hard": MinerSpec("TripletMarginMiner", {"margin": 0.1, "type_of_triplets": "hard"}),
    "multi_similarity": MinerSpec("MultiSimilarityMiner", {"epsilon": 0.1}),
}.items():
    MINERS.register(_name)(_spec)


def loss_names() -> list[str]:
    return BASE_LOSSES.names()


def miner_names() -> list[str]:
    return MINERS.names()
