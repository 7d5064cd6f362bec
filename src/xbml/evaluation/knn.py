"""Exact k-nearest-neighbour search by inner product, with bounded memory.

Both searches return, per query, the k best references ranked by exact float32
score (descending; see below) and, among exactly equal scores, by index
(ascending) -- the order faiss's ``IndexFlatL2`` (which pytorch-metric-learning's
``AccuracyCalculator`` uses) gives ties, so tied neighbours of different classes
rank the same way there and here. Results do not depend on block size, chunk
size or thread count.

``self_knn``: query set = reference set, self excluded by index.
  The score matrix is symmetric, so every pair is scored once: the items are
  cut into blocks, and for each block pair I < J the tile ``S = X_I X_J^T``
  (one sgemm) updates the running top-k of the rows of I (from the rows of S)
  and of the rows of J (from the columns of S). Diagonal tiles update their
  own rows only. Top-k upkeep is cheap: a tile entry is a candidate for a row
  only if it is >= that row's current k-th best score (a lower bound of the
  final one), so after the first tiles only a handful of entries per tile are
  candidates; two compares, an OR and one ``np.flatnonzero`` find those of
  both sides and they are merged into the rows' k best. Diagonal tiles go
  first and start each row's threshold at the k-th best within a window of
  its own block. Worker threads (single-threaded BLAS each) take tiles from a
  queue; a row block's top-k is updated under that block's lock. Reading a
  slightly stale threshold is safe: thresholds only rise, so a stale one only
  lets more candidates through.
  Measured on the 2-core AMD EPYC (AVX2) this was tuned on, D=128: sgemm of a
  1024 x 1024 tile ~3.4 ns per entry (~65-70 GFLOP/s per core, near peak),
  the candidate passes ~0.7-1 ns per entry; 1024 was the best block size
  between 512 and 3072 (larger tiles fall out of L2/L3, smaller ones pay
  Python overhead per tile). sgemm is ~3/4 of the time: half the arithmetic
  of a full search is where the speed comes from.

``cross_knn``: query vs gallery, faiss ``IndexFlatIP`` searched in chunks of
  queries, neighbours re-ordered by (score desc, index asc).

Exact float32 scores: an sgemm's rounding depends on where a pair falls in
the tile (two identical items can score a few ulps apart), so ranking by raw
sgemm scores would depend on tile size. The ranking is instead by the exact
float32 score: the float64 inner product rounded to float32, the same wherever
it is computed (identical items score identically). The search keeps
k + SLACK candidates per query by sgemm score; MARGIN(D) bounds (rigorously,
twice) how far an sgemm score can be from the exact one. Where consecutive
candidates' sgemm scores are further apart than that, the two orders agree;
rows with a closer pair are rescored in float64. A row where the last kept
candidate is within the margin of the k-th may have lost an item to rounding,
and is recomputed against every reference in float64 (rare outside exact
duplicates).

Ordering key: a neighbour is stored as one uint64, high 32 bits the float32
score mapped to an order-reversing unsigned integer, low 32 bits its index,
so that ascending keys = descending score, then ascending index. Merges are
plain integer sorts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading

import numpy as np

log = logging.getLogger(__name__)

PAD = np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # an empty top-k slot: sorts after every real key
_SIGN = np.uint32(0x8000_0000)
_LOW = np.uint64(0xFFFF_FFFF)
_MAX_ITEMS = 2**32 - 1
SLACK = 3  # candidates kept beyond k, so that near-ties at the k-th rarely need a recount


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def encode(scores: np.ndarray, index: np.ndarray) -> np.ndarray:
    """uint64 keys whose ascending order is (score descending, index ascending)."""
    s = np.ascontiguousarray(scores, dtype=np.float32) + np.float32(0.0)  # -0.0 -> +0.0: equal scores, equal keys
    u = s.view(np.uint32)
    ordered = np.where(u & _SIGN, ~u, u | _SIGN)  # ascending with the float value
    return ((~ordered).astype(np.uint64) << np.uint64(32)) | np.asarray(index).astype(np.uint64)


def decode_scores(keys: np.ndarray) -> np.ndarray:
    hi = (np.asarray(keys) >> np.uint64(32)).astype(np.uint32)
    ordered = ~hi
    u = np.where(ordered & _SIGN, ordered & ~_SIGN, ~ordered)
    return u.view(np.float32)


def decode_index(keys: np.ndarray) -> np.ndarray:
    return (np.asarray(keys) & _LOW).astype(np.int64)


def _thresholds(worst: np.ndarray) -> np.ndarray:
    """The score of each row's k-th best key; -inf where the top-k is not full yet."""
    thr = decode_scores(worst)
    thr[worst == PAD] = -np.inf
    return thr


@contextlib.contextmanager
def blas_threads(n: int):
    """Limit BLAS to `n` threads inside the block (1 while our own workers each run sgemm)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        log.warning("threadpoolctl missing: BLAS threads not limited, expect oversubscription")
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


class _TopK:
    """Running top-k keys of `n` rows, with per-row thresholds; rows are locked in blocks."""

    def __init__(self, n: int, k: int, block: int):
        self.k = k
        self.keys = np.full((n, k), PAD, dtype=np.uint64)
        self.thr = np.full(n, -np.inf, dtype=np.float32)
        self.block = block
        self.locks = [threading.Lock() for _ in range(-(-n // block))]

    def merge(self, start: int, rows: np.ndarray, cand: np.ndarray) -> None:
        """Merge candidate keys `cand` of local rows `rows` (sorted ascending) of the block at `start`."""
        k = self.k
        counts = np.bincount(rows)
        present = np.flatnonzero(counts)
        per_row = counts[present]
        width = k + int(per_row.max())
        dense = np.full((len(present), width), PAD, dtype=np.uint64)
        first = np.cumsum(per_row) - per_row
        col = np.arange(len(rows)) - np.repeat(first, per_row) + k
        dense[np.repeat(np.arange(len(present)), per_row), col] = cand
        grow = present + start
        with self.locks[start // self.block]:
            dense[:, :k] = self.keys[grow]
            dense.sort(axis=1)
            best = dense[:, :k]
            self.keys[grow] = best
            # thresholds only rise (another thread may have raised it since we read it)
            self.thr[grow] = np.maximum(self.thr[grow], _thresholds(best[:, -1]))


def self_knn(
    x: np.ndarray, k: int, block: int | None = None, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k neighbours of every row of `x` among the other rows (inner product).

    Returns (index int64 N x k, float32 score N x k), ranked by exact float32 score,
    then index; the scores are sgemm values except in rows rescored for near-ties.
    Needs 1 <= k <= N - 1. Memory: N x (k + SLACK) candidates plus, per worker
    thread, one block x block tile and two masks of that size.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if not 0 < k <= n - 1:
        raise ValueError(f"k={k} needs 1 <= k <= N-1 = {n - 1}")
    if n > _MAX_ITEMS:
        raise ValueError(f"at most {_MAX_ITEMS} items")
    threads = default_threads() if threads is None else max(1, int(threads))
    w = min(n - 1, k + SLACK)
    with blas_threads(1):
        keys = _self_topw(x, w, block, threads)
    with blas_threads(threads):
        return _finalise(x, x, decode_index(keys), decode_scores(keys), k, np.arange(n), np.full(n, n - 1))


def _self_topw(x: np.ndarray, k: int, block: int | None, threads: int) -> np.ndarray:
    """Top-k keys (by sgemm score, then index) of every row among the other rows, sorted.

    Runs `threads` workers; call it with BLAS limited to one thread.
    """
    n = len(x)
    block = int(block or 1024)
    # a block must hold a row's k neighbours for the first (diagonal) estimate to be useful
    block = max(block, 2 * k + 2, 16)
    starts = list(range(0, n, block))
    top = _TopK(n, k, block)
    window = max(128, 4 * k)

    def diagonal(i: int, s_buf: np.ndarray) -> None:
        a = starts[i]
        xi = x[a : a + block]
        b = len(xi)
        s = s_buf[: b * b].reshape(b, b)
        np.matmul(xi, xi.T, out=s)
        s[np.arange(b), np.arange(b)] = -np.inf  # self excluded by index, not by score
        # lower bound of each row's k-th best: the k-th best within a window of its own block
        thr = np.full(b, -np.inf, dtype=np.float32)
        for w in range(0, b, window):
            sub = s[w : w + window, w : w + window]
            if sub.shape[1] - 1 >= k:  # self is -inf, so k real scores are needed
                thr[w : w + window] = np.partition(sub, sub.shape[1] - k, axis=1)[:, sub.shape[1] - k]
        _collect(s, thr, a, top)

    def off_diagonal(i: int, j: int, s_buf: np.ndarray, m_buf: np.ndarray) -> None:
        a, c = starts[i], starts[j]
        xi, xj = x[a : a + block], x[c : c + block]
        bi, bj = len(xi), len(xj)
        s = s_buf[: bi * bj].reshape(bi, bj)
        np.matmul(xi, xj.T, out=s)
        # one pass finds the candidates of both sides: >= the row's or >= the column's threshold
        thr_r, thr_c = top.thr[a : a + bi].copy(), top.thr[c : c + bj].copy()
        m = m_buf[: bi * bj].reshape(bi, bj)
        m2 = m_buf[block * block : block * block + bi * bj].reshape(bi, bj)
        np.greater_equal(s, thr_r[:, None], out=m)
        np.greater_equal(s, thr_c[None, :], out=m2)
        np.logical_or(m, m2, out=m)
        flat = np.flatnonzero(m)
        if len(flat) == 0:
            return
        r, col = np.divmod(flat, bj)
        vals = s.reshape(-1)[flat]
        side = vals >= thr_r[r]
        if side.any():
            top.merge(a, r[side], encode(vals[side], col[side] + c))
        side = vals >= thr_c[col]
        if side.any():
            r, col, vals = r[side], col[side], vals[side]
            order = np.argsort(col, kind="stable")
            top.merge(c, col[order], encode(vals[order], r[order] + a))

    tasks: queue.SimpleQueue = queue.SimpleQueue()
    errors: list[BaseException] = []

    def worker() -> None:
        s_buf = np.empty(block * block, dtype=np.float32)
        m_buf = np.empty(2 * block * block, dtype=bool)
        while True:
            task = tasks.get()
            if task is None:
                return
            if errors:
                continue
            try:
                if task[0] == task[1]:
                    diagonal(task[0], s_buf)
                else:
                    off_diagonal(task[0], task[1], s_buf, m_buf)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                errors.append(exc)

    def run_phase(phase: list[tuple[int, int]]) -> None:
        if threads == 1 or len(phase) == 1:
            s_buf = np.empty(block * block, dtype=np.float32)
            m_buf = np.empty(2 * block * block, dtype=bool)
            for i, j in phase:
                diagonal(i, s_buf) if i == j else off_diagonal(i, j, s_buf, m_buf)
            return
        pool = [threading.Thread(target=worker, daemon=True) for _ in range(min(threads, len(phase)))]
        for t in pool:
            t.start()
        for task in phase:
            tasks.put(task)
        for _ in pool:
            tasks.put(None)
        for t in pool:
            t.join()
        if errors:
            raise errors[0]

    nb = len(starts)
    # diagonal tiles first (they set every row's first thresholds), then by distance from
    # the diagonal: items are often stored class by class, so near blocks hold the neighbours
    run_phase([(i, i) for i in range(nb)])
    run_phase([(i, i + d) for d in range(1, nb) for i in range(nb - d)])
    keys = np.sort(top.keys, axis=1)
    if (keys[:, -1] == PAD).any():  # pragma: no cover - guarded by k <= N-1
        raise RuntimeError("internal error: incomplete neighbour lists")
    return keys


def margin(dim: int) -> float:
    """Twice a bound on |float32 dot - exact dot| for unit vectors of `dim` entries, plus rounding."""
    u = 2.0**-24
    gamma = dim * u / (1 - dim * u)  # any summation order, FMA or not (Higham, Thm 3.1)
    return 2.0 * (1.01 * gamma + 2 * u)


def exact_scores(q: np.ndarray, ref: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """float32 rounding of the float64 inner products q[r] . ref[idx[r, j]] (idx >= 0)."""
    out = np.empty(idx.shape, dtype=np.float32)
    rows = max(1, (1 << 21) // max(1, idx.shape[1] * q.shape[1]))
    for a in range(0, len(idx), rows):
        ii = idx[a : a + rows]
        g = ref[np.maximum(ii, 0)].astype(np.float64)
        out[a : a + rows] = np.einsum("rd,rwd->rw", q[a : a + rows].astype(np.float64), g)
    return out


def _finalise(
    q: np.ndarray,
    ref: np.ndarray,
    cand: np.ndarray,
    approx: np.ndarray,
    k: int,
    self_pos: np.ndarray | None,
    avail: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by exact score from candidates `cand` (-1: none), sorted by approximate score
    `approx` (best first, then index).

    Where consecutive approximate scores among the first k + 1 are further apart than
    the error margin, the approximate order is the exact order; other rows are rescored
    exactly. `self_pos[r]`: position of query r in `ref` (excluded; -1 if absent);
    `avail[r]`: how many references query r has. Rows whose candidates may miss an
    item are recomputed against all of `ref`. Returned scores are the approximate ones
    except in rows that were rescored.
    """
    nq, w = cand.shape
    valid = cand >= 0
    # the bound is for unit vectors; scale it for others (callers pass normalised ones)
    norms = np.sqrt(np.einsum("ij,ij->i", q, q).max() * np.einsum("ij,ij->i", ref, ref).max())
    tol = max(1.0, float(norms)) * margin(q.shape[1])
    keys = np.where(valid, encode(approx, np.maximum(cand, 0)), PAD)
    with np.errstate(invalid="ignore"):  # -inf - -inf past the last candidate
        gaps = approx[:, : min(k, w - 1)] - approx[:, 1 : min(k, w - 1) + 1]
    near = np.flatnonzero((gaps <= tol).any(axis=1))
    if len(near):
        exact = np.where(valid[near], encode(exact_scores(q[near], ref, cand[near]), np.maximum(cand[near], 0)), PAD)
        keys[near] = np.sort(exact, axis=1)
    keys = keys[:, :k]
    if w < k:  # fewer references than k: pad
        keys = np.concatenate([keys, np.full((nq, k - w), PAD, dtype=np.uint64)], axis=1)
    # the candidates hold every possible top-k item if they are all the references, or if
    # the last one is further than the error margin below the k-th best
    nv = valid.sum(axis=1)
    last = approx[np.arange(nq), np.maximum(nv - 1, 0)]
    kth = approx[:, min(k, w) - 1]
    redo = np.flatnonzero(~((nv >= avail) | ((nv > k) & (last < kth - tol))))
    if len(redo):
        log.debug("%d of %d rows recomputed against all %d references (near-ties)", len(redo), nq, len(ref))
        keys[redo] = _brute_force(q[redo], ref, k, None if self_pos is None else self_pos[redo])
    got = keys != PAD
    return np.where(got, decode_index(keys), -1), np.where(got, decode_scores(keys), -np.inf)


def _brute_force(q: np.ndarray, ref: np.ndarray, k: int, self_pos: np.ndarray | None) -> np.ndarray:
    """Top-k keys by exact score of each row of q against every item of ref."""
    out = np.full((len(q), k), PAD, dtype=np.uint64)
    step = 4096
    for a in range(0, len(q), 256):
        qd = q[a : a + 256].astype(np.float64)
        best = out[a : a + 256]
        for b in range(0, len(ref), step):
            s = (qd @ ref[b : b + step].astype(np.float64).T).astype(np.float32)
            idx = np.arange(b, b + s.shape[1])
            keys = encode(s, np.broadcast_to(idx, s.shape))
            if self_pos is not None:
                keys[self_pos[a : a + 256, None] == idx[None, :]] = PAD
            if keys.shape[1] > k:
                keys = np.partition(keys, k - 1, axis=1)[:, :k]
            best = np.sort(np.concatenate([best, keys], axis=1), axis=1)[:, :k]
        out[a : a + 256] = best
    return out


def _collect(s: np.ndarray, thr: np.ndarray, start: int, top: _TopK) -> None:
    """Candidates of a diagonal tile `s` (entries >= their row's threshold) merged into `top`."""
    mask = s >= thr[:, None]
    mask[np.arange(len(s)), np.arange(len(s))] = False  # self (scored -inf) passes a -inf threshold
    flat = np.flatnonzero(mask)
    if len(flat) == 0:
        return
    r, c = np.divmod(flat, s.shape[1])
    top.merge(start, r, encode(s.reshape(-1)[flat], c + start))


def cross_knn(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    chunk: int | None = None,
    threads: int | None = None,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k gallery items of each query (inner product), faiss IndexFlatIP in chunks.

    `exclude[q]` is the gallery position of query q itself (-1 if it is not in the
    gallery): that item is dropped by index. Returns (index int64 nq x k, score float32),
    positions into `gallery`, ranked as `self_knn` ranks; -1 / -inf pad rows with
    fewer than k items. Memory: the gallery index plus one chunk's results.
    """
    import faiss

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    nq, ng = len(queries), len(gallery)
    if len(gallery) > _MAX_ITEMS:
        raise ValueError(f"at most {_MAX_ITEMS} gallery items")
    has_self = exclude is not None and bool((exclude >= 0).any())
    self_pos = exclude if has_self else None
    ks = int(min(ng, k + SLACK + int(has_self)))  # faiss wants a Python int
    avail = ng - (exclude >= 0) if has_self else np.full(nq, ng)
    chunk = int(chunk or 4096)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    threads = default_threads() if threads is None else max(1, int(threads))
    old_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        with blas_threads(threads):
            for a in range(0, nq, chunk):
                d, i = index.search(queries[a : a + chunk], ks)
                valid = i >= 0
                if has_self:
                    valid &= i != exclude[a : a + chunk, None]
                # order by (score desc, index asc), self and empty slots last
                keys = np.where(valid, encode(d, np.maximum(i, 0)), PAD)
                keys.sort(axis=1)
                got = keys != PAD
                cand = np.where(got, decode_index(keys), -1)
                approx = np.where(got, decode_scores(keys), -np.inf)
                out_i[a : a + chunk], out_s[a : a + chunk] = _finalise(
                    queries[a : a + chunk], gallery, cand, approx, k,
                    None if self_pos is None else self_pos[a : a + chunk], avail[a : a + chunk],
                )
    finally:
        faiss.omp_set_num_threads(old_threads)
    return out_i, out_s
