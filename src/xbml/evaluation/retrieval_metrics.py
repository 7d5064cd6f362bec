"""Retrieval metrics of an embedding: MAP@R, R-Precision, Precision@1, Recall@k.

numpy (+ faiss for the query/gallery protocol) only: no torch, so evaluating a
60k-item test set stays in a few hundred MB.

Definitions (Musgrave et al. 2020, "A Metric Learning Reality Check"), matching
pytorch-metric-learning 2.9's ``AccuracyCalculator`` with
``avg_of_avgs=False`` (every query weighs the same):

* Embeddings are L2-normalised here (in float64, then rounded to float32, so
  that vectors of any float64 scale give the same result); similarity is the
  inner product (cosine).
* Query = reference (no masks): every item is a query, its references are all
  other items; the item itself is excluded by index, so exact duplicates of it
  still count as neighbours. Query/gallery (masks): queries are the `query`
  items, references the `gallery` items; a query that is also in the gallery is
  excluded from its own references by index.
* Neighbours are ranked by similarity, descending; exactly equal similarities
  by item index, ascending (what faiss's flat index gives AccuracyCalculator).
  Similarity is the exact float32 inner product (float64 dot product rounded to
  float32), so the ranking does not depend on BLAS, chunk size or threads, and
  exact duplicates tie (see xbml.evaluation.knn). On data with near-ties below
  float32 resolution, AccuracyCalculator's own rounding (faiss L2 distances) may
  order them differently; elsewhere the two agree to rounding of the means.
* R of a query = number of its references with the same label.
* MAP@R = mean over queries of (1/R) * sum_{i<=R, item i relevant} precision@i.
  R-Precision = mean of (relevant among the first R) / R.
  Precision@1 = share of queries whose nearest neighbour is relevant.
  Recall@k = share of queries with at least one relevant item among their k
  nearest neighbours (the DML papers' "Recall@k"; all neighbours if fewer
  than k exist).
* Lone queries: AccuracyCalculator drops every query whose label has no other
  reference item (R = 0; ``get_lone_query_labels`` / ``not_lone_query_mask``)
  from MAP@R, R-Precision and Precision@1. The same queries are dropped here,
  from all metrics, Recall@k included (they could never score), and counted
  as ``num_lone_queries``; ``num_queries`` counts the queries that were scored.
  If every query is lone the metrics are NaN (AccuracyCalculator's answer too).
* k of the search = max(largest R, largest Recall k), capped by the number of
  references, so that MAP@R and R-Precision are exact.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from xbml.errors import DataError
from xbml.metric_names import RANK_METRICS, RECALL_KS, recall_name

log = logging.getLogger(__name__)

METRIC_KEYS = RANK_METRICS


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero."""
    # in float64 before the cast: float64 values beyond float32 range would become inf, tiny ones 0;
    # dividing by the largest entry first keeps the sum of squares from overflowing or underflowing
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=np.float32)
    rows = 8192  # a float64 copy of a block of rows at a time, never of the whole set
    for a in range(0, len(x), rows):
        block = x[a : a + rows].astype(np.float64)
        _divide_rows(block, np.abs(block).max(axis=1))
        _divide_rows(block, np.sqrt(np.einsum("ij,ij->i", block, block)))
        out[a : a + rows] = block
    return out


def _divide_rows(x: np.ndarray, by: np.ndarray) -> None:
    by[by == 0] = 1
    x /= by[:, None]


def _refuse_trivial(q_codes: np.ndarray, ref_codes: np.ndarray, r: np.ndarray) -> None:
    if len(np.union1d(q_codes, ref_codes)) == 1:
        raise DataError(
            "every item has the same label: with a single class every neighbour is relevant, so MAP@R "
            "would be 1.0 whatever the embedding (and the search would need N x N memory); "
            "evaluate a set of at least two classes (are the labels right?)"
        )
    if not (r > 0).any():
        raise DataError(
            "no query has another item of its class among the references, so no metric is defined; "
            "every class needs at least two items (or one query and one gallery item): are the labels "
            "and the query/gallery masks right?"
        )


def _as_mask(mask, n: int, name: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype != bool:
        if m.dtype.kind not in "iu" or not np.isin(m, (0, 1)).all():
            raise DataError(f"{name} mask must be boolean, got dtype {m.dtype}")
        m = m.astype(bool)
    if m.shape != (n,):
        raise DataError(f"{name} mask has shape {m.shape}, expected ({n},) like the labels")
    if not m.any():
        raise DataError(f"{name} mask selects no item")
    return m


def retrieval_metrics(
    embeddings,
    labels,
    query_mask=None,
    gallery_mask=None,
    ks=RECALL_KS,
    chunk_size: int | None = None,
    threads: int | None = None,
    refuse_trivial: bool = False,
) -> dict:
    """Metrics of `embeddings` (N x D, any scale: normalised here) with class `labels`
    (N integers; the values are only names).

    Without masks: query = reference, self excluded. With `query_mask` and
    `gallery_mask` (boolean, length N, both or neither): the query items against
    the gallery items (identical masks: query = reference on that subset).
    `chunk_size`: items per side of a score tile (query = reference; default 1024)
    or queries per faiss search (query/gallery; default 4096); it changes memory
    and speed, never the result. `threads`: worker threads (default: the CPUs
    available). `refuse_trivial`: raise DataError, before the search, when the
    metrics would be NaN (no query has a class mate) or trivially 1.0 (one class).

    Returns a dict: map_at_r, r_precision, precision_at_1, recall_at_<k> for k in
    `ks` (fractions; NaN if no query has a class mate), and bookkeeping:
    protocol ("query=reference" or "query/gallery"), num_queries (queries scored),
    num_lone_queries (queries dropped: no class mate among their references),
    num_references (reference set size), num_classes (distinct query labels),
    embedding_dim, k (neighbours searched), seconds (wall time of this call).
    Raises DataError for unusable input (shapes, non-finite values, labels).
    """
    from xbml.evaluation.knn import cross_knn, self_knn

    t0 = time.perf_counter()
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"embeddings must be a non-empty N x D array, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise DataError(f"embeddings must be numbers, got dtype {x.dtype}")
    n = len(x)
    y = np.asarray(labels)
    if y.shape != (n,):
        raise DataError(f"labels have shape {y.shape}, expected ({n},) for {n} embeddings")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
            y = y.astype(np.int64)
        else:
            raise DataError(f"labels must be integers, got dtype {y.dtype}")
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"recall k values must be >= 1, got {ks}")
    if (query_mask is None) != (gallery_mask is None):
        raise DataError("give both the query and the gallery mask, or neither")
    if not np.isfinite(x).all():
        raise DataError("embeddings contain NaN or infinite values")
    x = l2_normalise(x)
    codes = np.unique(y, return_inverse=True)[1].reshape(-1).astype(np.int64)

    if query_mask is not None:
        qm = _as_mask(query_mask, n, "query")
        gm = _as_mask(gallery_mask, n, "gallery")
        if np.array_equal(qm, gm):  # the same set on both sides: query = reference on it
            keep = np.flatnonzero(qm)
            x, codes, query_mask = x[keep], codes[keep], None
            n = len(x)

    if query_mask is None:
        protocol = "query=reference"
        q_codes = ref_codes = codes
        r = np.bincount(codes)[codes] - 1
        num_refs = n
        k = min(max(int(r.max()), ks[-1]), n - 1)
        if refuse_trivial:
            _refuse_trivial(q_codes, ref_codes, r)
        if k > 0:
            nn, _ = self_knn(x, k, block=chunk_size, threads=threads)
        else:
            nn = np.empty((n, 0), dtype=np.int64)
    else:
        protocol = "query/gallery"
        q_idx, g_idx = np.flatnonzero(qm), np.flatnonzero(gm)
        q_codes, ref_codes = codes[q_idx], codes[g_idx]
        g_pos = np.full(n, -1, dtype=np.int64)
        g_pos[g_idx] = np.arange(len(g_idx))
        self_pos = g_pos[q_idx]  # the query's own gallery position, -1 if not in the gallery
        r = np.bincount(ref_codes, minlength=codes.max() + 1)[q_codes] - (self_pos >= 0)
        num_refs = len(g_idx)
        k = min(max(int(r.max()), ks[-1]), num_refs)
        if refuse_trivial:
            _refuse_trivial(q_codes, ref_codes, r)
        nn, _ = cross_knn(x[q_idx], x[g_idx], k, chunk=chunk_size, threads=threads, exclude=self_pos)

    sums = _score(nn, q_codes, ref_codes, r, ks)
    scored = int((r > 0).sum())
    out: dict = {}
    for key in METRIC_KEYS + tuple(recall_name(kk) for kk in ks):
        out[key] = float(sums[key] / scored) if scored else float("nan")
    if not scored:
        log.warning("no query has another item of its class among the references: metrics are NaN")
    out.update(
        protocol=protocol,
        num_queries=scored,
        num_lone_queries=int(len(r) - scored),
        num_references=int(num_refs),
        num_classes=int(len(np.unique(q_codes))),
        embedding_dim=int(x.shape[1]),
        k=int(k),
        seconds=round(time.perf_counter() - t0, 3),
    )
    return out


def _score(nn: np.ndarray, q_codes: np.ndarray, ref_codes: np.ndarray, r: np.ndarray, ks, chunk: int = 8192) -> dict:
    """Per-metric sums over the non-lone queries, computed in chunks of queries."""
    k = nn.shape[1]
    sums = dict.fromkeys(METRIC_KEYS + tuple(recall_name(kk) for kk in ks), 0.0)
    if k == 0:
        return sums
    ranks = np.arange(1, k + 1, dtype=np.float64)
    for a in range(0, len(nn), chunk):
        rr = r[a : a + chunk]
        keep = rr > 0
        if not keep.any():
            continue
        rr = rr[keep]
        idx = nn[a : a + chunk][keep]
        got = idx >= 0
        hit = got & (ref_codes[np.where(got, idx, 0)] == q_codes[a : a + chunk][keep][:, None])
        within_r = hit & (ranks[None, :] <= rr[:, None])
        cum = np.cumsum(within_r, axis=1)
        sums["map_at_r"] += float(np.sum(np.sum(within_r * cum / ranks, axis=1) / rr))
        sums["r_precision"] += float(np.sum(cum[:, -1] / rr))
        sums["precision_at_1"] += float(hit[:, 0].sum())
        first_hit = np.where(hit.any(axis=1), hit.argmax(axis=1), k)  # rank-1 of the first relevant item
        for kk in ks:
            sums[recall_name(kk)] += float((first_hit < kk).sum())
    return sums
