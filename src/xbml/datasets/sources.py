"""Where a published dataset's raw files come from: the sources file (config/datasets.yaml, or
the one given with --sources), its schema, and each file resolved to the checksums to verify,
the mirrors to try and the local copy to use.

The published checksums and mirrors are written once, in the package's published_sources.yaml:
an entry of a sources file that gives no checksum key, or no ``urls``, takes them from
there (``md5: null`` is an answer: accept the file unverified).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from xbml.datasets.download import ALGORITHMS, normalize_checksums
from xbml.errors import ConfigError

log = logging.getLogger(__name__)

SOURCE_KEYS = ("download_dir", "expected_counts", "files")
FILE_KEYS = ("name", "local", "urls") + ALGORITHMS

DEFAULT_SOURCES = Path("config/datasets.yaml")
#: the one place the published checksums and mirrors are written; package data, so that it is
#: found from any working directory without reading the repository
PUBLISHED_SOURCES = Path(__file__).with_name("published_sources.yaml")


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


def published_sources(dataset: str) -> dict:
    """The published block of `dataset` (package data); {} for a dataset without one."""
    return load_sources(PUBLISHED_SOURCES, dataset)


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset as its authors distribute it (its checksums and mirrors: published_sources.yaml)."""

    name: str
    # an archive is unpacked into `dest`; any other file is copied into `dest`
    archive: bool = True
    # the folder the archive holds, so that `local:` may point at an already extracted copy
    top: str | None = None
    dest: str = "."


@dataclass
class Source:
    """A file resolved against the sources block: what to verify and where to get it."""

    spec: FileSpec
    checksums: dict[str, str]
    urls: list[str]
    local: Path | None


def sources_schema(cls) -> dict:
    """JSON schema of the sources block of the published dataset `cls` (a RealDataset)."""
    names = [spec.name for spec in cls.files]
    path = {"type": ["string", "null"], "description": "a path (relative to the working directory)"}
    checksum = {"type": ["string", "null"], "description": "a hex digest, or null to accept the file unverified"}
    count = {"type": "integer", "minimum": 0, "description": "a count (a whole number >= 0)"}
    entry = {
        "type": "object",
        "description": f"an entry with the keys {', '.join(FILE_KEYS)}",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"enum": names, "description": f"one of the files of {cls.title}: {', '.join(names)}"},
            **{algo: checksum for algo in ALGORITHMS},
            "urls": {
                "type": ["array", "string", "null"],
                "items": {"type": "string", "description": "a URL (http:// or https://)"},
                "description": "a list of mirror URLs, tried in order",
            },
            "local": path,
        },
    }
    return {
        "type": "object",
        "description": f"a mapping with the keys {', '.join(SOURCE_KEYS)}",
        "additionalProperties": False,
        "properties": {
            "download_dir": path,
            "expected_counts": {
                "type": ["object", "null"],
                "description": f"a mapping of {', '.join(cls.count_keys())} to counts",
                "additionalProperties": False,
                "properties": {key: count for key in cls.count_keys()},
            },
            "files": {"type": ["array", "null"], "description": "a list of file entries", "items": entry},
        },
    }


def resolve_sources(cls, sources: dict) -> tuple[list[Source], Path | None, dict[str, int]]:
    """(files, download_dir or None, expected counts) of dataset `cls` from its checked sources block."""
    where = f"sources of {cls.name}"
    by_name: dict[str, dict] = {}
    for entry in sources.get("files") or []:
        if entry["name"] in by_name:
            raise ConfigError(f"{where}: file {entry['name']!r} is listed twice; keep one entry per file")
        by_name[entry["name"]] = entry
    published = {e.get("name"): e for e in published_sources(cls.name).get("files") or [] if isinstance(e, dict)}
    resolved = []
    for spec in cls.files:
        entry = by_name.get(spec.name, {})
        default = published.get(spec.name, {})
        what = f"{where}: {spec.name}"
        # `md5: null` is an answer (accept unverified); a missing key falls back to the published one
        given = entry if any(a in entry for a in ALGORITHMS) else default
        if not any(a in given for a in ALGORITHMS):
            raise ConfigError(
                f"{what}: no checksum, and the published sources of the package have none either; "
                f"set `md5:` or `sha256:` (or `md5: null` to accept it unverified) under {cls.name}.files"
            )
        checksums = normalize_checksums({a: given[a] for a in ALGORITHMS if a in given}, what)
        urls = entry["urls"] if "urls" in entry else default.get("urls")
        urls = [urls] if isinstance(urls, str) else list(urls or [])
        local = entry.get("local")
        resolved.append(Source(spec, checksums, urls, Path(local).expanduser() if local else None))
    download_dir = sources.get("download_dir")
    expected = sources.get("expected_counts")
    if expected is None:
        expected = dict(cls.expected_counts)
    else:
        if not expected:
            log.warning("%s: expected_counts is empty: prepare will not check the image counts", cls.name)
        expected = dict(expected)
    return resolved, Path(download_dir).expanduser() if download_dir else None, expected
