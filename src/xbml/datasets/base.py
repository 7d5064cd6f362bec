"""What every dataset offers the registry and the `xbml fetch` / `xbml prepare` commands.

``fetch(raw_dir, sources, seed, progress)`` makes ``raw_dir`` hold the verified raw files
(downloaded, or generated for the embedded dataset; `seed` matters only where something is
generated) and is a no-op when they are already there; ``prepare(raw_dir, out_dir,
val_fraction, seed)`` writes the common manifest (:mod:`xbml.datasets.manifest`) into
``out_dir``. A dataset declares the schema of its sources block, which :meth:`check_sources`
enforces, so the two kinds of dataset report a bad block in the same words.
"""

from __future__ import annotations

from typing import ClassVar

from xbml.datasets.schema import check
from xbml.errors import ConfigError


class Dataset:
    name: ClassVar[str] = ""
    title: ClassVar[str] = ""

    @classmethod
    def sources_schema(cls) -> dict:
        """JSON schema of the dataset's block in the sources file (config/datasets.yaml)."""
        raise NotImplementedError

    @classmethod
    def check_sources(cls, sources: dict | None) -> dict:
        """The sources block, an empty one for None; ConfigError naming key, value and fix."""
        sources = {} if sources is None else sources
        check(sources, cls.sources_schema(), f"sources of {cls.name}")
        return sources

    @classmethod
    def fetch(cls, raw_dir, sources: dict | None = None, seed: int = 0, progress: bool = True) -> None:
        raise NotImplementedError

    @classmethod
    def prepare(cls, raw_dir, out_dir, val_fraction: float = 0.2, seed: int = 0) -> None:
        raise NotImplementedError

    @staticmethod
    def check_val_fraction(val_fraction: float) -> None:
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(
                f"val_fraction must be in [0, 1), got {val_fraction}; "
                "it is the share of the training classes held out for validation (--val-fraction)"
            )
