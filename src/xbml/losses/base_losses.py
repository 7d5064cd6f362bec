"""Base DML losses: thin adapters around pytorch-metric-learning, chosen by name from the
catalog (xbml.losses.catalog: each loss's class, defaults and default miner)."""

from __future__ import annotations

import torch
from torch import nn

from xbml.errors import ConfigError
from xbml.losses.catalog import BASE_LOSSES, MINERS, LossSpec, MinerSpec, loss_names, miner_names

__all__ = ["BASE_LOSSES", "MINERS", "BaseLoss", "build_base_loss", "loss_names", "miner_names"]


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
    spec: LossSpec = BASE_LOSSES.get(loss_cfg["name"])
    params = {**spec.defaults, **loss_cfg["params"]}
    if spec.needs_classes:
        params.update(num_classes=num_classes, embedding_size=embedding_dim)
    try:
        loss = spec.load()(**params)
    except TypeError as exc:
        raise ConfigError(f"loss.params for {loss_cfg['name']!r} rejected by pytorch-metric-learning: {exc}") from None
    miner_name = loss_cfg["miner"]
    if miner_name == "auto":
        miner_name = spec.default_miner
    miner = None
    if miner_name not in (None, "none"):
        miner_spec: MinerSpec = MINERS.get(miner_name)
        try:
            miner = miner_spec.load()(**{**miner_spec.defaults, **loss_cfg["miner_params"]})
        except TypeError as exc:
            raise ConfigError(f"loss.miner_params for {miner_name!r} rejected: {exc}") from None
    return BaseLoss(loss, miner)
