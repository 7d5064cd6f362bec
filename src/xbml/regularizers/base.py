"""The thin base class of a regulariser: a term added to the base DML loss during training.

    total = (1 - sum_r w_r) * base + sum_r w_r * term_r

A regulariser is one module: it declares its config block (`defaults`, with the domains of its
keys), builds itself from that block and the run (`build`), returns its term and detached
diagnostics from the model's output (`forward`), and says what a uniform guess would score
(`chance`, where that exists). The trainer, the run log, `train_summary.json` and the report
handle every registered regulariser the same way; XML (`xbml.regularizers.xml`) is the first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from xbml.errors import ConfigError

#: a regulariser "learned" when its loss ends at most this share of chance over the last 10% of
#: iterations: a uniform guess scores 1.0, and seed noise around it is a few percent
LEARNED_RATIO = 0.95
#: the keys every regulariser block has
COMMON_DEFAULTS = {
    # w: total = (1 - w) * base + w * term; 0 disables the regulariser
    "weight": 0.0,
    # learning rate of its own parameters relative to optim.lr (1 = the base learning rate)
    "lr_multiplier": 1.0,
}


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


class Regularizer(nn.Module):
    """Subclass, set the class attributes, implement `build` and `forward`, register it with
    `@REGULARIZERS.register` (xbml.regularizers.registry)."""

    name: ClassVar[str]  # its config block, and the prefix of its logged terms
    label: ClassVar[str]  # how the report names its loss, e.g. "XML prediction loss"
    defaults: ClassVar[dict] = {}  # its own keys; COMMON_DEFAULTS are added
    nullable: ClassVar[frozenset] = frozenset()  # keys that may be null
    diagnostics: ClassVar[dict[str, str]] = {}  # logged detached term -> its label

    @classmethod
    def config_block(cls) -> dict:
        return {**COMMON_DEFAULTS, **cls.defaults}

    @classmethod
    def domains(cls) -> tuple[dict, dict]:
        """(key -> xbml.config.Interval, key -> valid values) of its block; a method, so that
        defining a regulariser does not import the config module. weight in [0, 1] and a positive
        lr_multiplier by default."""
        from xbml.config import POSITIVE, Interval

        return {"weight": Interval(0, 1), "lr_multiplier": POSITIVE}, {}

    @classmethod
    def active(cls, block: dict) -> bool:
        """Whether a run with this block computes the term (weight > 0, or forced)."""
        return block["weight"] > 0 or bool(block.get("force_compute", False))

    @classmethod
    def check(cls, cfg: dict) -> None:
        """Checks across keys (beyond each key's domain), raising ConfigError; none by default."""

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
