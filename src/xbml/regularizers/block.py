"""What the config knows of a regulariser: its block's keys, their domains and cross-key checks.

Nothing here imports torch: a workflow validates its config against every regulariser's block when
it parses (each `snakemake` call, and each job a cluster starts), and importing torch there cost
about 4 CPU-s each time. `xbml.regularizers.base.Regularizer` is this plus the term itself; a
built-in regulariser declares its block in a module of its own (`xml_block`, `xbm_block`) beside
its term, a plugin's `Regularizer` subclass is both.
"""

from __future__ import annotations

from typing import ClassVar

#: the keys every regulariser block has
COMMON_DEFAULTS = {
    # w: total = (1 - w) * base + w * term; 0 disables the regulariser
    "weight": 0.0,
    # learning rate of its own parameters relative to optim.lr (1 = the base learning rate)
    "lr_multiplier": 1.0,
}


class RegularizerBlock:
    """Set the class attributes; override `domains` and `check` where the block has more rules."""

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
