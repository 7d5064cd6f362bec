"""The thin base class of a regulariser: a term added to the base DML loss during training.

    total = (1 - sum_r w_r) * base + sum_r w_r * term_r

A regulariser is one module: it declares its config block (`defaults`, with the domains of its
keys), builds itself from that block and the run (`build`), returns its term and detached
diagnostics from the model's output (`forward`), and says what a uniform guess would score
(`chance`, where that exists). The trainer, the run log, `train_summary.json` and the report
handle every registered regulariser the same way; XML (`xbml.regularizers.xml`) is the first.
What the config needs of it (`RegularizerBlock`: keys, domains, checks) is torch-free
(xbml.regularizers.block).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xbml.errors import ConfigError
from xbml.regularizers.block import COMMON_DEFAULTS, RegularizerBlock

__all__ = ["COMMON_DEFAULTS", "LEARNED_RATIO", "Batch", "BuildContext", "Regularizer", "RegularizerBlock", "summarise"]

#: a regulariser "learned" when its loss ends at most this share of chance over the last 10% of
#: iterations: a uniform guess scores 1.0, and seed noise around it is a few percent
LEARNED_RATIO = 0.95


@dataclass
class BuildContext:
    """What a regulariser may build itself from: the run's model, base loss and config."""

    model: nn.Module  # xbml.models.EmbeddingModel: feature_dim, head
    base_loss: nn.Module
    cfg: dict  # the whole resolved training config
    num_classes: int  # training classes
    world_size: int  # processes training together (torchrun)

    @property
    def embedding_dim(self) -> int:
        return self.cfg["model"]["embedding_dim"]

    def generator(self, offset: int) -> torch.Generator:
        """A generator of its own, seeded from the run's seed: building a regulariser must not
        move the global RNG, so a run with and one without it start from the same network."""
        return torch.Generator().manual_seed(self.cfg["seed"] + offset)


@dataclass
class Batch:
    """One training step as a regulariser sees it."""

    output: Any  # xbml.models.embedding_model.ModelOutput
    labels: torch.Tensor
    split: int  # rows [:split] and [split:] are the two class-disjoint sub-batches
    iteration: int  # steps done before this one
    head: nn.Module
    base_loss: nn.Module


class Regularizer(RegularizerBlock, nn.Module):
    """Subclass, set the class attributes of `RegularizerBlock`, implement `build` and `forward`,
    register it with `@REGULARIZERS.register` (xbml.regularizers.registry)."""

    @classmethod
    def build(cls, block: dict, context: BuildContext) -> Regularizer:
        raise NotImplementedError

    @property
    def chance(self) -> float | None:
        """The term's value for a uniform guess, where one is defined."""
        return None

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """{"loss": the term (with gradient), <diagnostic>: detached tensors named in `diagnostics`}."""
        raise NotImplementedError

    def facts(self) -> dict:
        """What the report should know about this instance (settings, sizes), by value."""
        return {}

    def picture_state(self) -> dict | None:
        """Tensors the report's pictures need from the finished run (saved in model.pt), or None."""
        return None


def summarise(reg: Regularizer, weight: float, records: list[dict]) -> dict:
    """The regulariser's part of train_summary.json: its loss over the last 10% of iterations
    against chance, whether it learned, its diagnostics there, and its facts."""
    window = records[-max(1, len(records) // 10):] if records else []

    def mean(key: str) -> float:
        values = [r[key] for r in window if key in r]
        return float(sum(values) / len(values)) if values else math.nan

    final = mean(f"loss_{reg.name}")
    chance = reg.chance
    ratio = None if chance is None or not chance > 0 else final / chance
    return {
        "label": reg.label,
        "weight": weight,
        "chance_loss": chance,
        "final_loss": final,
        "ratio_to_chance": ratio,
        "learned": None if ratio is None else bool(ratio <= LEARNED_RATIO),
        "window_iterations": len(window),
        "diagnostics": {key: {"label": label, "value": mean(f"{reg.name}_{key}")}
                        for key, label in reg.diagnostics.items()},
        "facts": reg.facts(),
    }


def refuse_several_processes(name: str, world_size: int, why: str) -> None:
    if world_size > 1:
        raise ConfigError(f"{name} cannot train with {world_size} processes (torchrun): {why}; train it on one GPU "
                          "(resources gpu: 1)")
