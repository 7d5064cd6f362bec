"""Where a dataset's raw files come from: mirrors, checksums, local archives (config/datasets.yaml)."""

from __future__ import annotations

from pathlib import Path

import yaml

from xbml.errors import ConfigError

DEFAULT_SOURCES = Path("config/datasets.yaml")


def load_sources(path: str | Path | None, dataset: str) -> dict:
    """The block of `dataset` in the sources file; {} when the file or block is absent."""
    p = Path(path) if path else DEFAULT_SOURCES
    if not p.exists():
        if path:
            raise ConfigError(f"sources file {p} does not exist")
        return {}
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"sources file {p} must map dataset names to their sources")
    block = data.get(dataset, {}) or {}
    if not isinstance(block, dict):
        raise ConfigError(f"sources file {p}: entry {dataset!r} must be a mapping")
    return block
