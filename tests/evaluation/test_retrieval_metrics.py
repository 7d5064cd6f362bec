"""retrieval_metrics against pytorch-metric-learning's AccuracyCalculator and brute force."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from xbml.errors import DataError
from xbml.evaluation.knn import cross_knn, encode, self_knn
from xbml.evaluation.retrieval_metrics import _score, l2_normalise, retrieval_metrics

AC_KEYS = {"map_at_r": "mean_average_precision_at_r", "r_precision": "r_precision", "precision_at_1": "precision_at_1"}


def accuracy_calculator(x, y, query=None, gallery=None, k=None):
    """AccuracyCalculator as the method prescribes, on the embeddings xbml normalises."""
    torch = pytest.importorskip("torch")
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calc = AccuracyCalculator(include=tuple(AC_KEYS.values()), avg_of_avgs=False, k=k, device=torch.device("cpu"))
    xn = l2_normalise(x)
    if query is None:
        acc = calc.get_accuracy(xn, y)  # reference = query, ref_includes_query=True
    else:
        acc = calc.get_accuracy(xn[query], y[query], xn[gallery], y[gallery], ref_includes_query=False)
    return {ours: acc[theirs] for ours, theirs in AC_KEYS.items()}


def assert_agrees(ours: dict, theirs: dict, tol: float = 1e-6) -> None:
    for key, value in theirs.items():
        if np.isnan(value):
            assert np.isnan(ours[key]), key
        else:
            assert abs(ours[key] - value) <= tol, (key, ours[key], value)


def clustered(n, dim, classes, seed, spread=1.0, sizes=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n) if sizes is None else np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.standard_normal((y.max() + 1, dim))
    x = centres[y] + spread * rng.standard_normal((len(y), dim))
    return x.astype(np.float32), y


def brute_force_neighbours(xn, candidates=None, exclude_self=True):
    """Items ranked for each row by (exact float32 score desc, index asc): the full score
    matrix in float64, rounded to float32; only `candidates` (and not self) are ranked."""
    xd = xn.astype(np.float64)
    s = (xd @ xd.T).astype(np.float32)
    n = len(xn)
    allowed = np.ones((n, n), bool) if candidates is None else np.broadcast_to(candidates, (n, n)).copy()
    if exclude_self:
        allowed[np.arange(n), np.arange(n)] = False
    keys = np.where(allowed, encode(s, np.broadcast_to(np.arange(n), (n, n))), np.iinfo(np.uint64).max)
    order = (np.sort(keys, axis=1) & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return order[:, : allowed.sum(axis=1).min()]


def brute_force_recall(x, y, ks, query=None, gallery=None):
    xn = l2_normalise(x)
    n = len(y)
    query = np.ones(n, bool) if query is None else query
    gallery = np.ones(n, bool) if gallery is None else gallery
    ranked = brute_force_neighbours(xn, candidates=gallery)
    out = {}
    for k in ks:
        hits = []
        for i in np.flatnonzero(query):
            refs = [j for j in ranked[i] if gallery[j] and j != i]
            if not any(y[j] == y[i] for j in refs):
                continue  # lone query: dropped, as from the other metrics
            hits.append(any(y[j] == y[i] for j in refs[:k]))
        out[f"recall_at_{k}"] = float(np.mean(hits))
    return out


def quantised(n, classes, seed, dim=8):
    """Unit vectors with entries in {0, +-1/2} (4 non-zeros): every score is exact, so ties abound:
    exact duplicates and neighbours of different classes at exactly the same similarity."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, dim), np.float32)
    for i in range(n):
        nz = rng.choice(dim, 4, replace=False)
        x[i, nz] = rng.choice([-1.0, 1.0], 4)
    return x, rng.integers(0, classes, n)


def lattice(n, classes, seed, dim=8, copies=0.3):
    """Unit vectors v/16 with integer v, |v|^2 = 256: every score is a multiple of 1/256, exact
    in any float32 sum, so equal scores are equal bit for bit in faiss and here. Scores take
    hundreds of values (fewer ties at the k-th neighbour than `quantised`); a share
    `copies` of the items are exact duplicates or mirror images of others, of random classes."""
    rng = np.random.default_rng(seed)
    vecs = []
    while len(vecs) < n:
        v = rng.integers(-9, 10, dim)
        rest = 256 - (v[:-1] ** 2).sum()
        if rest >= 0 and round(rest**0.5) ** 2 == rest:
            v[-1] = round(rest**0.5) * rng.choice([-1, 1])
            vecs.append(v)
    x = np.array(vecs, np.float32) / 16
    for i in np.flatnonzero(rng.random(n) < copies):
        j = rng.integers(n)
        x[i] = x[j] if rng.random() < 0.5 else x[j] * np.where(np.arange(dim) == rng.integers(dim), -1, 1)
    return x, rng.integers(0, classes, n)


# -- query = reference -----------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [4, 32, 128, 300])
def test_clustered_data_matches_accuracy_calculator(dim):
    x, y = clustered(1500, dim, 60, seed=dim, spread=1.2 * np.sqrt(dim) / 4)
    ours = retrieval_metrics(x, y, chunk_size=256)
    assert_agrees(ours, accuracy_calculator(x, y))
    assert ours["num_queries"] == 1500 and ours["num_references"] == 1500
    assert ours["k"] == np.bincount(y).max() - 1
    for key in AC_KEYS:
        assert 0 < ours[key] < 1  # not a trivial case


def test_recall_at_k_matches_brute_force():
    x, y = clustered(700, 16, 90, seed=3, spread=1.5)
    ks = (1, 2, 4, 8, 16)
    ours = retrieval_metrics(x, y, ks=ks, chunk_size=100)
    ref = brute_force_recall(x, y, ks)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-12)
    assert ours["recall_at_1"] == ours["precision_at_1"]
    assert ours["recall_at_1"] < ours["recall_at_8"] < 1


def test_singleton_classes_are_dropped_like_accuracy_calculator():
    sizes = [1, 5, 1, 2, 1, 9, 3, 1, 1, 4] * 12
    x, y = clustered(None, 24, None, seed=5, spread=2.0, sizes=sizes)
    ours = retrieval_metrics(x, y)
    assert_agrees(ours, accuracy_calculator(x, y))
    assert ours["num_lone_queries"] == 5 * 12
    assert ours["num_queries"] == len(y) - 5 * 12
    assert ours["num_classes"] == len(sizes)
    for key, value in brute_force_recall(x, y, (1, 2, 4, 8)).items():
        assert ours[key] == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ac_k", [None, "max_bin_count"])
def test_exact_ties_ordered_like_accuracy_calculator(seed, ac_k):
    # few distinct vectors: every item has duplicates, and most neighbours tie with
    # neighbours of other classes; ties at the k-th neighbour decide who is searched
    x, y = quantised(400, 25, seed)
    ours = retrieval_metrics(x, y, chunk_size=64)
    assert_agrees(ours, accuracy_calculator(x, y, k=ac_k))
    for key, value in brute_force_recall(x, y, (1, 2, 4, 8)).items():
        assert ours[key] == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_duplicates_and_mirror_images_ordered_like_accuracy_calculator(seed):
    x, y = lattice(600, 40, seed)
    ours = retrieval_metrics(x, y, chunk_size=128)
    assert_agrees(ours, accuracy_calculator(x, y, k="max_bin_count"))
    q = np.arange(600) % 4 == 0
    assert_agrees(retrieval_metrics(x, y, q, ~q, chunk_size=50), accuracy_calculator(x, y, q, ~q))


def test_tie_order_matters_in_the_tie_cases():
    """The tie tests are sensitive: ranking tied neighbours by index descending changes MAP@R."""
    x, y = quantised(400, 25, 0)
    xn = l2_normalise(x)
    ranked = brute_force_neighbours(xn)
    s = (xn.astype(np.float64) @ xn.T.astype(np.float64)).astype(np.float32)[np.arange(len(y))[:, None], ranked]
    r = np.bincount(y)[y] - 1
    k = r.max()
    asc = _score(ranked[:, :k], y, y, r, (1,))
    desc_order = np.lexsort((-ranked, -s), axis=1)  # equal scores: larger index first
    desc = _score(np.take_along_axis(ranked, desc_order, 1)[:, :k], y, y, r, (1,))
    assert abs(asc["map_at_r"] - desc["map_at_r"]) > 1e-3


def test_equal_similarity_neighbours_of_different_classes():
    # the query's two nearest neighbours are mirror images (same score, bit for bit), of
    # different classes; by index, the lower index ranks first, as in AccuracyCalculator
    x = np.array(
        [[1, 0, 0], [0.8, 0.6, 0], [0.8, -0.6, 0], [0.8, 0, 0.6], [0.8, 0, -0.6], [-1, 0, 0], [-0.9, 0.1, 0]],
        dtype=np.float32,
    )
    for y in (np.array([7, 7, 3, 3, 7, 5, 5]), np.array([7, 3, 7, 7, 3, 5, 5])):
        ours = retrieval_metrics(x, y)
        assert_agrees(ours, accuracy_calculator(x, y))
    nn, scores = self_knn(l2_normalise(x), 4)
    assert list(nn[0]) == [1, 2, 3, 4] and len(set(scores[0])) == 1


def test_tiny_n_smaller_than_k():
    x, y = clustered(5, 3, 2, seed=1, spread=0.3)
    y = np.array([0, 1, 0, 1, 0])
    ours = retrieval_metrics(x, y, ks=(1, 2, 4, 8))
    assert ours["k"] == 4  # N - 1, not 8
    assert_agrees(ours, accuracy_calculator(x, y))
    assert ours["recall_at_8"] == ours["recall_at_4"] == 1.0
    for key, value in brute_force_recall(x, y, (1, 2, 4, 8)).items():
        assert ours[key] == pytest.approx(value, abs=1e-12)


def test_all_lone_queries_give_nan_like_accuracy_calculator():
    x, y = clustered(6, 4, 6, seed=2)
    y = np.arange(6)
    ours = retrieval_metrics(x, y)
    assert np.isnan(ours["map_at_r"]) and np.isnan(ours["recall_at_1"])
    assert ours["num_queries"] == 0 and ours["num_lone_queries"] == 6
    assert_agrees(ours, accuracy_calculator(x, y))
    single = retrieval_metrics(x[:1], y[:1])
    assert single["num_queries"] == 0 and single["k"] == 0


def test_scale_and_dtype_do_not_matter():
    x, y = clustered(300, 12, 20, seed=4)
    base = retrieval_metrics(x, y)
    scaled = retrieval_metrics(x.astype(np.float64) * np.linspace(0.1, 50, len(x))[:, None], y)
    for key in AC_KEYS:
        assert scaled[key] == pytest.approx(base[key], abs=1e-6)
    assert retrieval_metrics(x, y.astype(np.int32))["map_at_r"] == base["map_at_r"]
    shifted = retrieval_metrics(x, y * 1000 - 7)  # label values are names only
    assert shifted["map_at_r"] == base["map_at_r"]


# -- the search itself ---------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["clustered", "quantised", "lattice"])
def test_self_knn_equals_brute_force_for_any_block_and_threads(data):
    if data == "clustered":
        x, _ = clustered(1100, 20, 40, seed=6)
        rng = np.random.default_rng(0)
        x[rng.integers(0, 1100, 100)] = x[rng.integers(0, 1100, 100)]  # exact duplicates, across blocks
        x[:50, -1] = 0  # queries for which mirror images (last coordinate negated) tie exactly
        x[50:100] = x[100:150] * np.where(np.arange(20) == 19, -1, 1).astype(np.float32)
    elif data == "quantised":
        x, _ = quantised(1100, 10, seed=6)
    else:
        x, _ = lattice(1100, 10, seed=6)
    xn = l2_normalise(x)
    expect = brute_force_neighbours(xn)[:, :15]
    for block, threads in itertools.product((16, 100, 333, 4096), (1, 2, 3)):
        nn, scores = self_knn(xn, 15, block=block, threads=threads)
        assert np.array_equal(nn, expect), (block, threads)
        assert np.all(np.diff(scores, axis=1) <= 0)


def test_cross_knn_equals_brute_force_for_any_chunk():
    x, _ = clustered(900, 12, 30, seed=7)
    rng = np.random.default_rng(1)
    x[rng.integers(0, 900, 150)] = x[rng.integers(0, 900, 150)]
    xn = l2_normalise(x)
    gallery = np.arange(900) % 3 != 0
    g = np.flatnonzero(gallery)
    expect = brute_force_neighbours(xn, candidates=gallery, exclude_self=False)[:, :12]
    for chunk, threads in ((1, 1), (7, 2), (300, 1), (5000, 2)):
        nn, _ = cross_knn(xn, xn[g], 12, chunk=chunk, threads=threads)
        assert np.array_equal(g[nn], expect), chunk


def test_self_knn_k_bounds():
    xn = l2_normalise(np.eye(4, dtype=np.float32))
    nn, _ = self_knn(xn, 3)
    assert np.array_equal(nn, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])  # all tied: by index
    with pytest.raises(ValueError):
        self_knn(xn, 4)


def test_cross_knn_excludes_self_and_pads():
    x, _ = quantised(60, 5, seed=8)
    xn = l2_normalise(x)
    g = np.arange(0, 60, 2)
    q = np.arange(0, 12)
    exclude = np.where(q % 2 == 0, q // 2, -1)
    nn, scores = cross_knn(xn[q], xn[g], 40, chunk=5, threads=2, exclude=exclude)
    assert nn.shape == (12, 40)
    for row, qi in enumerate(q):
        ranked = [j for j in brute_force_neighbours(xn, exclude_self=False)[qi] if j % 2 == 0 and j != qi]
        got = nn[row][nn[row] >= 0]
        assert list(g[got]) == ranked[: len(got)]
        assert len(got) == (29 if qi % 2 == 0 else 30)
        assert np.all(nn[row][len(got) :] == -1)


# -- query / gallery -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_query_gallery_matches_accuracy_calculator(seed):
    x, y = clustered(1200, 32, 80, seed=seed, spread=2.5)
    rng = np.random.default_rng(seed)
    query = rng.random(len(y)) < 0.45
    gallery = ~query
    query[y == 3] = True  # class 3 only among the queries: lone queries
    gallery[y == 3] = False
    ours = retrieval_metrics(x, y, query, gallery, chunk_size=100)
    assert_agrees(ours, accuracy_calculator(x, y, query, gallery))
    assert ours["protocol"] == "query/gallery"
    assert ours["num_lone_queries"] == (y == 3).sum()
    assert ours["num_references"] == gallery.sum()
    for key, value in brute_force_recall(x, y, (1, 2, 4, 8), query, gallery).items():
        assert ours[key] == pytest.approx(value, abs=1e-12)


def test_query_gallery_with_ties_matches_accuracy_calculator():
    x, y = quantised(500, 20, seed=11)
    query = np.zeros(len(y), bool)
    query[::3] = True
    ours = retrieval_metrics(x, y, query, ~query, chunk_size=7)
    assert_agrees(ours, accuracy_calculator(x, y, query, ~query))


def test_query_subset_of_gallery_excludes_self():
    x, y = clustered(600, 16, 50, seed=9, spread=1.5)
    query = np.zeros(len(y), bool)
    query[:200] = True
    gallery = np.ones(len(y), bool)
    ours = retrieval_metrics(x, y, query, gallery)
    # AccuracyCalculator's form of the same protocol: reference starts with the queries
    torch = pytest.importorskip("torch")
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    xn = l2_normalise(x)
    calc = AccuracyCalculator(include=tuple(AC_KEYS.values()), avg_of_avgs=False, device=torch.device("cpu"))
    acc = calc.get_accuracy(xn[:200], y[:200], xn, y, ref_includes_query=True)
    assert_agrees(ours, {ours_k: acc[theirs] for ours_k, theirs in AC_KEYS.items()})
    for key, value in brute_force_recall(x, y, (1, 2, 4, 8), query, gallery).items():
        assert ours[key] == pytest.approx(value, abs=1e-12)


def test_identical_masks_are_query_equals_reference_on_the_subset():
    x, y = clustered(400, 8, 30, seed=10)
    keep = np.arange(400) % 4 != 0
    ours = retrieval_metrics(x, y, keep, keep)
    sub = retrieval_metrics(x[keep], y[keep])
    assert ours["protocol"] == "query=reference"
    for key in AC_KEYS:
        assert ours[key] == sub[key]


def test_bad_inputs_are_refused():
    x, y = clustered(20, 4, 3, seed=0)
    with pytest.raises(DataError, match="labels"):
        retrieval_metrics(x, y[:-1])
    with pytest.raises(DataError, match="integers"):
        retrieval_metrics(x, y + 0.5)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        retrieval_metrics(bad, y)
    with pytest.raises(DataError, match="both"):
        retrieval_metrics(x, y, query_mask=np.ones(20, bool))
    with pytest.raises(DataError, match="no item"):
        retrieval_metrics(x, y, np.zeros(20, bool), np.ones(20, bool))
    with pytest.raises(DataError, match="shape"):
        retrieval_metrics(x, y, np.ones(19, bool), np.ones(20, bool))


def test_no_torch_import():
    code = (
        "import sys, numpy as np\n"
        "from xbml.evaluation import retrieval_metrics\n"
        "x = np.random.default_rng(0).standard_normal((300, 8)).astype('float32')\n"
        "y = np.arange(300) % 30\n"
        "retrieval_metrics(x, y)\n"
        "retrieval_metrics(x, y, np.arange(300) < 100, np.arange(300) >= 100)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_float64_scale_beyond_float32_range_is_normalised_first():
    x, y = clustered(200, 8, 10, seed=5)
    base = retrieval_metrics(x, y)
    for scale in (1e39, 1e200, 1e-50, 1e-200):
        scaled = retrieval_metrics(x.astype(np.float64) * scale, y)
        for key in AC_KEYS:
            assert scaled[key] == pytest.approx(base[key], abs=1e-9), (scale, key)


def test_refuse_trivial_refuses_before_the_search():
    x, y = clustered(60, 4, 3, seed=1)
    with pytest.raises(DataError, match="single class"):
        retrieval_metrics(x, np.zeros(60, dtype=int), refuse_trivial=True)
    with pytest.raises(DataError, match="no query has another item of its class"):
        retrieval_metrics(x, np.arange(60), refuse_trivial=True)
    q = y == 0
    with pytest.raises(DataError, match="no query has another item of its class"):
        retrieval_metrics(x, y, q, ~q, refuse_trivial=True)
    ours, plain = retrieval_metrics(x, y, refuse_trivial=True), retrieval_metrics(x, y)
    assert {k: ours[k] for k in AC_KEYS} == {k: plain[k] for k in AC_KEYS}
