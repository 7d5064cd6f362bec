"""The embeddings file (.npz) that `xbml embed` writes and `xbml evaluate` reads.

Arrays:
  embeddings  N x D floats (float32 as written by `embed`; stored as given, not normalised)
  labels      N integers (class ids)
  query       N booleans  } optional, together: the query/gallery protocol
  gallery     N booleans  } (without them: query = reference, self excluded)
  anything else           extra arrays (e.g. `rows`: manifest rows), kept as is

`save_embeddings` writes atomically and refuses what `load_embeddings` would
refuse; `load_embeddings` names the problem (DataError) instead of failing later.
Refused embeddings, besides wrong shapes and types: NaN/inf, values beyond the
float32 range, all-zero rows (no direction to compare) and rows too small to
normalise in float64.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xbml.atomic import atomic_path
from xbml.errors import DataError

RESERVED = ("embeddings", "labels", "query", "gallery")


@dataclass
class EmbeddingsFile:
    embeddings: np.ndarray  # N x D, float
    labels: np.ndarray  # N, integer
    query: np.ndarray | None = None  # N, bool
    gallery: np.ndarray | None = None  # N, bool
    extra: dict = field(default_factory=dict)

    @property
    def protocol(self) -> str:
        return "query=reference" if self.query is None else "query/gallery"

    def __len__(self) -> int:
        return len(self.labels)


def validate(embeddings, labels, query=None, gallery=None, source: str = "embeddings") -> EmbeddingsFile:
    """Check the arrays against the file contract; returns them as an EmbeddingsFile."""
    emb = np.asarray(embeddings)
    if emb.ndim != 2:
        raise DataError(f"{source}: 'embeddings' must be 2-D (N x D), got shape {emb.shape}")
    n, d = emb.shape
    if n == 0 or d == 0:
        raise DataError(f"{source}: 'embeddings' is empty (shape {emb.shape})")
    if emb.dtype.kind != "f":
        raise DataError(f"{source}: 'embeddings' must be floating point, got dtype {emb.dtype}")
    _check_values(emb, source)
    lab = np.asarray(labels)
    if lab.ndim != 1 or len(lab) != n:
        raise DataError(f"{source}: 'labels' has shape {lab.shape} but 'embeddings' has {n} rows")
    if lab.dtype.kind not in "iu":
        raise DataError(f"{source}: 'labels' must be integers, got dtype {lab.dtype}")
    if (query is None) != (gallery is None):
        missing = "gallery" if gallery is None else "query"
        raise DataError(f"{source}: '{missing}' mask missing: give both 'query' and 'gallery', or neither")
    masks = []
    for name, m in (("query", query), ("gallery", gallery)):
        if m is None:
            masks.append(None)
            continue
        m = np.asarray(m)
        if m.ndim != 1 or len(m) != n:
            raise DataError(f"{source}: '{name}' mask has shape {m.shape} but 'embeddings' has {n} rows")
        if m.dtype != bool:
            if m.dtype.kind not in "iu" or not np.isin(m, (0, 1)).all():
                raise DataError(f"{source}: '{name}' mask must be boolean, got dtype {m.dtype}")
            m = m.astype(bool)
        if not m.any():
            raise DataError(f"{source}: '{name}' mask is empty (selects no item)")
        masks.append(m)
    return EmbeddingsFile(emb, lab, masks[0], masks[1])


def _bad_rows(bad: np.ndarray) -> str:
    rows = np.flatnonzero(bad)
    return f"{len(rows)} row(s), first at row {int(rows[0])}"


def _check_values(emb: np.ndarray, source: str) -> None:
    """Refuse values that cannot be L2-normalised and compared (checked in float64, as evaluate does)."""
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        raise DataError(
            f"{source}: 'embeddings' has non-finite values (NaN/inf) in {_bad_rows(bad)}: "
            "re-run the embedding step (did training diverge?)"
        )
    largest = np.abs(emb).max(axis=1).astype(np.float64)
    bad = largest > np.finfo(np.float32).max
    if bad.any():
        raise DataError(
            f"{source}: 'embeddings' has values beyond the float32 range (up to {largest.max():.3g}) in "
            f"{_bad_rows(bad)}: embeddings are float32 vectors; re-run the embedding step (did training "
            "diverge?) or scale the vectors down (e.g. L2-normalise them) before saving"
        )
    bad = largest == 0
    if bad.any():
        raise DataError(
            f"{source}: 'embeddings' has all-zero vectors (zero norm, no direction to compare) in "
            f"{_bad_rows(bad)}: re-run the embedding step (did the model collapse?) or leave those items out"
        )
    squares = np.einsum("ij,ij->i", emb, emb, dtype=np.float64)
    bad = squares < np.finfo(np.float64).tiny
    if bad.any():
        raise DataError(
            f"{source}: 'embeddings' has vectors whose norm underflows float64 (entries up to "
            f"{largest[bad].max():.3g}) in {_bad_rows(bad)}: scale the vectors up (e.g. L2-normalise them) "
            "before saving"
        )


def save_embeddings(path, embeddings, labels, query=None, gallery=None, **extra) -> Path:
    """Write an embeddings file atomically (the arrays as given; checked first)."""
    ef = validate(embeddings, labels, query, gallery, source=str(path))
    arrays = {"embeddings": ef.embeddings, "labels": ef.labels}
    if ef.query is not None:
        arrays.update(query=ef.query, gallery=ef.gallery)
    for name, value in extra.items():
        if name in RESERVED:  # pragma: no cover - python forbids duplicate keywords already
            raise ValueError(f"'{name}' is reserved")
        value = np.asarray(value)
        if value.dtype.hasobject:
            raise DataError(f"{path}: extra array '{name}' has dtype object; use numbers or fixed-width strings")
        arrays[name] = value
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: numpy must not append '.npz' to the temporary name
            np.savez(f, **arrays)
    return path


def load_embeddings(path) -> EmbeddingsFile:
    """Read and validate an embeddings file; DataError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such embeddings file")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a valid .npz embeddings file ({type(exc).__name__}: {exc})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single .npy array, not an .npz archive with 'embeddings' and 'labels'")
    with z:
        names = set(z.files)
        missing = [k for k in ("embeddings", "labels") if k not in names]
        if missing:
            raise DataError(
                f"{path}: missing array(s) {', '.join(repr(m) for m in missing)} "
                f"(has: {', '.join(sorted(names)) or 'nothing'})"
            )
        try:
            arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise DataError(f"{path}: unreadable array in the .npz ({type(exc).__name__}: {exc})") from None
    ef = validate(
        arrays.pop("embeddings"), arrays.pop("labels"), arrays.pop("query", None), arrays.pop("gallery", None),
        source=os.fspath(path),
    )
    ef.extra = arrays
    return ef
