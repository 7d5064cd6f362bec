"""Concatenated embeddings of several models (MLRC's 4-fold protocol): each model's embedding
L2-normalised, then side by side, so every model weighs the same in the cosine similarity of
the result (which `xbml evaluate` normalises again).

The files must describe the same items in the same order (labels, query/gallery masks and the
manifest `rows` where they have them): embeddings of the same split by models of one run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xbml.errors import DataError
from xbml.evaluation.embeddings_file import EmbeddingsFile, load_embeddings, save_embeddings


def _same_items(first: EmbeddingsFile, other: EmbeddingsFile, source: Path, reference: Path) -> None:
    if len(other) != len(first):
        raise DataError(f"{source} has {len(other)} items, {reference} {len(first)}: embed the same split with each model")
    pairs = [("labels", first.labels, other.labels), ("query mask", first.query, other.query),
             ("gallery mask", first.gallery, other.gallery),
             ("manifest rows", first.extra.get("rows"), other.extra.get("rows"))]
    for what, a, b in pairs:
        if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
            raise DataError(f"{source} and {reference} differ in their {what}: embed the same split of the same "
                            "prepared dataset with each model")


def concatenate(paths: list[str | Path]) -> EmbeddingsFile:
    """The L2-normalised embeddings of `paths`, side by side (N x sum of their widths)."""
    if len(paths) < 2:
        raise DataError(f"concatenation needs at least two embeddings files, got {len(paths)}")
    files = [load_embeddings(p) for p in paths]
    for path, ef in zip(paths[1:], files[1:]):
        _same_items(files[0], ef, Path(path), Path(paths[0]))
    parts = []
    for ef in files:
        emb = ef.embeddings.astype(np.float64)
        parts.append(emb / np.linalg.norm(emb, axis=1, keepdims=True))
    first = files[0]
    return EmbeddingsFile(np.concatenate(parts, axis=1).astype(np.float32), first.labels, first.query,
                          first.gallery, dict(first.extra))


def write_concatenated(paths: list[str | Path], out: str | Path) -> EmbeddingsFile:
    ef = concatenate(paths)
    save_embeddings(out, ef.embeddings, ef.labels, query=ef.query, gallery=ef.gallery, **ef.extra)
    return ef
