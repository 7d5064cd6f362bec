"""The `glyphs` dataset as the registry sees it: its sources block, `fetch` (generate the array
store into the raw folder, atomically; a no-op when it already holds the set for these
parameters) and `prepare` (the common manifest, held-out classes as the test split)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from xbml.atomic import make_temp_dir, remove_stale_siblings, replace_dir
from xbml.datasets.base import Dataset
from xbml.datasets.links import check_inside
from xbml.datasets.glyphs.fonts import DEFAULT_WORKERS, MIN_FONTS, font_table
from xbml.datasets.glyphs.selection import (
    LOOKALIKE_DISTANCE,
    LOOKALIKE_LOCAL,
    held_out_classes,
    subset_classes,
)
from xbml.datasets.glyphs.selection_cache import cached_selection
from xbml.datasets.glyphs.store import JSON_NAME, NPZ_NAME, file_sha256, generate, holds_store, metadata, write_store
from xbml.datasets.registry import DATASETS
from xbml.datasets.schema import check
from xbml.errors import DataError
from xbml.os_errors import naming

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1

#: generation parameters a sources block may set, with their defaults
DEFAULTS = {"images_per_class": 40, "image_size": 24, "max_classes": 0, "test_fraction": 0.5}

SOURCES_SCHEMA = {
    "type": "object",
    "description": f"a mapping with the keys {', '.join(DEFAULTS)} (all optional)",
    "additionalProperties": False,
    "properties": {
        "images_per_class": {"type": "integer", "minimum": 1, "description": "a whole number >= 1"},
        "image_size": {"type": "integer", "minimum": 8, "description": "a whole number of pixels >= 8"},
        "max_classes": {"type": "integer", "minimum": 0, "description": "a whole number >= 0 (0 = all classes)"},
        "test_fraction": {
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 1,
            "description": "a number strictly between 0 and 1 (the share of held-out classes)",
        },
    },
}
_SEED_SCHEMA = {"type": "integer", "minimum": 0, "description": "a whole number >= 0 (--seed)"}


#: below this many images one process draws them all: a spawned renderer costs ~0.5 CPU-s to start
#: (numpy, PIL, the fonts) and one process draws ~1,500 24-px images a second
PARALLEL_FROM_IMAGES = 2000


def generation_workers(n_images: int) -> int:
    if n_images < PARALLEL_FROM_IMAGES:
        return 1
    return min(DEFAULT_WORKERS, len(os.sched_getaffinity(0)) or 1)


def resolve_params(sources: dict | None, seed: int) -> dict:
    """Generation parameters from a sources block; unknown or invalid keys are ConfigErrors."""
    sources = Glyphs.check_sources(sources)
    check(seed, _SEED_SCHEMA, "glyphs", name="seed")
    params = {**DEFAULTS, **sources}
    params["test_fraction"] = float(params["test_fraction"])
    params["seed"] = int(seed)
    params["min_fonts"] = MIN_FONTS
    params["lookalike"] = [LOOKALIKE_DISTANCE, LOOKALIKE_LOCAL]
    params["generator_version"] = GENERATOR_VERSION
    return params


def _remove_leftovers(target: Path) -> None:
    """Temporary folders of `target` that a killed fetch or prepare left beside it."""
    for infix in (".tmp-", ".old-"):
        for stale in remove_stale_siblings(target, infix):
            log.info("removed %s, left by an interrupted run", stale)


def _check_replaceable(target: Path, marker: str, what: str) -> None:
    """Refuse to replace a folder that is not ours (it might hold a user's files)."""
    if not target.exists():
        return
    if not target.is_dir() or (any(target.iterdir()) and not (target / marker).exists()):
        raise DataError(
            f"{target} exists and is not a {what} (no {marker}); choose another folder or remove it"
        )


def _write_in_place(target: Path, write) -> None:
    """Call `write(folder)` on a fresh folder beside `target`, then swap it in as `target`."""
    tmp = make_temp_dir(f".{target.name}.tmp-", target.parent)
    try:
        with naming(target):  # a full disk surfaces in a buffered write that names no file
            write(tmp)
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@DATASETS.register("glyphs")
class Glyphs(Dataset):
    """Embedded dataset: characters rendered from matplotlib's fonts, generated on `fetch`."""

    name = "glyphs"
    title = "glyphs"

    @classmethod
    def sources_schema(cls) -> dict:
        return SOURCES_SCHEMA

    @classmethod
    def fetch(cls, raw_dir, sources: dict | None = None, seed: int = 0, progress: bool = True) -> None:
        raw_dir = Path(raw_dir)
        params = resolve_params(sources, seed)
        _remove_leftovers(raw_dir)
        table = font_table()
        if holds_store(raw_dir, params, list(table.names)):
            log.info("%s already holds the glyphs set for these parameters; nothing to do", raw_dir)
            return
        _check_replaceable(raw_dir, JSON_NAME, "glyphs raw folder")
        raw_dir.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        selection = cached_selection()
        classes = subset_classes(selection.classes, params["max_classes"])
        n_images = 0

        def write(folder: Path) -> None:
            nonlocal n_images
            images, labels, fonts = generate(
                classes,
                selection.fonts,
                params["images_per_class"],
                params["image_size"],
                params["seed"],
                workers=generation_workers(len(classes) * params["images_per_class"]),
                progress=progress,
            )
            meta = metadata(params, table, len(selection.classes), classes, images, labels, fonts)
            write_store(folder, images, labels, fonts, meta)
            n_images = len(labels)

        _write_in_place(raw_dir, write)
        log.info(
            "generated %d images of %d glyph classes into %s in %.1f s",
            n_images,
            len(classes),
            raw_dir,
            time.perf_counter() - start,
        )

    @classmethod
    def prepare(cls, raw_dir, out_dir, val_fraction: float = 0.2, seed: int = 0) -> None:
        from xbml.datasets.manifest import Manifest, split_classes, write_manifest

        raw_dir, out_dir = Path(raw_dir), Path(out_dir)
        meta_path, npz_path = raw_dir / JSON_NAME, raw_dir / NPZ_NAME
        if not (meta_path.is_file() and npz_path.is_file()):
            raise DataError(
                f"{raw_dir} holds no complete glyphs set ({JSON_NAME} + {NPZ_NAME}); "
                f"run `python -m xbml fetch glyphs --out {raw_dir}` first"
            )
        cls.check_val_fraction(val_fraction)
        check_inside(raw_dir, [JSON_NAME, NPZ_NAME])  # the raw folder's DVC version must cover them
        try:
            meta = json.loads(meta_path.read_text())
        except (ValueError, UnicodeDecodeError):
            meta = None
        if not isinstance(meta, dict) or not isinstance(meta.get("params"), dict):
            raise DataError(
                f"{meta_path} is not the JSON record `xbml fetch` writes; "
                f"remove {raw_dir} and run `python -m xbml fetch glyphs --out {raw_dir}` again"
            )
        if meta.get("file_sha256") != file_sha256(npz_path):
            raise DataError(
                f"{npz_path} does not match the checksum in {meta_path}; "
                f"remove {raw_dir} and run `python -m xbml fetch glyphs --out {raw_dir}` again"
            )
        with np.load(npz_path, allow_pickle=False) as z:
            labels = z["labels"].astype(np.int64)
            image_size = int(z["images"].shape[-1])
        test = held_out_classes(np.unique(labels), meta["params"]["test_fraction"])
        split, fold = split_classes(labels, test, val_fraction, seed)
        info = {
            "name": "glyphs",
            "array_store": os.path.relpath(npz_path.resolve(), out_dir.resolve()),
            "channels": 1,
            "image_size": image_size,
            "protocol": "self",
            "num_classes": int(len(np.unique(labels))),
            "val_fraction": float(val_fraction),
            "split_seed": int(seed),
            "source": {
                "generation_seed": meta["params"]["seed"],
                "arrays_sha256": meta["arrays_sha256"],
                "file_sha256": meta["file_sha256"],
            },
        }
        m = Manifest(
            images=[f"#{i}" for i in range(len(labels))],
            labels=labels,
            splits=split,
            roles=np.full(len(labels), "both", dtype=object),
            folds=fold,
            info=info,
        )
        _check_replaceable(out_dir, "dataset.json", "prepared dataset folder")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(out_dir)
        _write_in_place(out_dir, lambda folder: write_manifest(folder, m))
        counts = {s: int(len(np.unique(labels[split == s]))) for s in ("train", "val", "test")}
        log.info("prepared glyphs into %s: classes %s", out_dir, counts)
