"""Building blocks of the report's pictures and environment section, on known inputs."""

import numpy as np
import pytest
import torch

from conftest import make_blob_dataset
from xbml.reporting import environment, pictures


def _embeddings(n=60, d=8, classes=6, seed=0, **masks):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat(np.arange(classes), n // classes)
    return pictures.Embeddings(x, labels, np.arange(100, 100 + n), **masks)


def test_neighbours_equal_a_full_sort_and_never_return_the_query():
    e = _embeddings()
    e.embeddings[7] = e.embeddings[3]  # an exact tie: the lower index must come first
    e.embeddings[9] = e.embeddings[3]
    queries = np.arange(60)
    idx, score = pictures.nearest_neighbours(e, queries, k=5, chunk=7)
    sims = e.embeddings @ e.embeddings.T
    for q in queries:
        others = np.array([j for j in range(60) if j != q])
        ref = others[np.lexsort((others, -sims[q, others]))][:5]
        assert idx[q].tolist() == ref.tolist()
        assert q not in idx[q]
        assert np.allclose(score[q], sims[q, ref])
    assert idx[3][:2].tolist() == [7, 9]


def test_query_gallery_neighbours_come_from_the_gallery_only():
    query = np.zeros(60, bool)
    query[::3] = True
    e = _embeddings(query=query, gallery=~query)
    idx, _ = pictures.nearest_neighbours(e, e.query_indices, k=4)
    assert np.isin(idx, np.flatnonzero(~query)).all()
    assert e.query_indices.tolist() == np.flatnonzero(query).tolist()


def test_query_choice_is_deterministic_and_starts_with_the_largest_differences():
    a = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]], bool)
    b = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]], bool)
    chosen = pictures.choose_queries([a, b], 4)
    assert chosen == pictures.choose_queries([a, b], 4)
    assert chosen[:2] == [(1, "largest difference"), (3, "largest difference")]
    assert [why for _, why in chosen[2:]] == ["random", "random"]
    assert len({p for p, _ in chosen}) == 4
    only = pictures.choose_queries([a], 3)
    assert all(why == "random" for _, why in only) and len(only) == 3


def test_candidate_queries_are_a_fixed_subset_of_large_query_sets():
    e = _embeddings(n=120, classes=6)
    assert pictures.candidate_queries(e, limit=500).tolist() == list(range(120))
    sub = pictures.candidate_queries(e, limit=50)
    assert len(sub) == 50 and sub.tolist() == sorted(set(sub.tolist()))
    assert sub.tolist() == pictures.candidate_queries(e, limit=50).tolist()


def test_upsampling_and_colour_scale():
    a = np.arange(16).reshape(4, 4)
    up = pictures._upsample(a, (32, 32))
    assert up.shape == (32, 32)
    assert up[0, 0] == 0 and up[31, 31] == 15 and up[8, 0] == 4 and (up[:8, :8] == 0).all()
    assert pictures._scale_max(np.array([0.07, 0.21])) == pytest.approx(0.3)
    assert pictures._scale_max(np.array([0.99])) == 1.0
    assert len(pictures.prototype_colours(32)) == 32
    assert len(set(map(tuple, pictures.prototype_colours(32)))) == 32


def test_tsne_classes_are_a_fixed_subset():
    labels = np.repeat(np.arange(40), 3)
    c = pictures.tsne_classes(labels, 8)
    assert len(c) == 8 and c.tolist() == pictures.tsne_classes(labels, 8).tolist()
    assert pictures.tsne_classes(labels[:9], 8).tolist() == [0, 1, 2]
    xy = pictures.tsne_2d(np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32))
    assert xy.shape == (30, 2)
    assert np.array_equal(xy, pictures.tsne_2d(np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)))


def test_display_images_are_the_stored_pixels(tmp_path):
    prepared = make_blob_dataset(tmp_path / "prepared", classes=6, per_class=3)
    images = pictures.DisplayImages({"prepared": str(prepared), "image_size": 32, "resize": 256})
    with np.load(prepared / "store.npz") as z:
        raw = z["images"]
    shown = images.image(5)
    assert shown.shape == (32, 32)
    assert np.allclose(shown, raw[5] / 255.0, atol=1e-6)


def test_prototype_assignments_are_a_softmax_over_prototypes():
    from xbml.models import build_model

    torch.manual_seed(0)
    model = build_model({"backbone": "glyph_convnet", "pretrained": False, "weights_path": None, "embedding_dim": 8}, 1)
    protos = torch.nn.functional.normalize(torch.randn(5, model.feature_dim), dim=1)
    batch = torch.randn(3, 1, 32, 32)
    a = pictures.compute_assignments(model, {"assign.prototypes": protos}, {"assignment_scale": 10.0}, batch)
    assert a.shape == (3, 5, 4, 4)
    assert np.allclose(a.sum(axis=1), 1.0, atol=1e-5)
    fmap = model(batch).feature_map.detach()
    x = torch.nn.functional.normalize(fmap[0, :, 1, 2], dim=0)
    expected = torch.softmax(10.0 * protos @ x, dim=0).numpy()
    assert np.allclose(a[0, :, 1, 2], expected, atol=1e-5)


def test_projected_prototype_assignments_score_the_head_projected_locations():
    from xbml.models import build_model
    from xbml.models.prototype_pooling import lipschitz_normalize

    torch.manual_seed(0)
    model = build_model({"backbone": "glyph_convnet", "pretrained": False, "weights_path": None, "embedding_dim": 8}, 1)
    protos = torch.randn(5, 8)  # rows in embedding space, unnormalised
    batch = torch.randn(3, 1, 32, 32)
    cfg = {"assignment_scale": 10.0, "features": "projected"}
    a = pictures.compute_assignments(model, {"assign.prototypes": protos}, cfg, batch)
    assert a.shape == (3, 5, 4, 4)
    fmap = model(batch).feature_map.detach()
    z = lipschitz_normalize(model.head.linear.weight.detach() @ fmap[1, :, 2, 3])
    assert np.allclose(a[1, :, 2, 3], torch.softmax(10.0 * protos @ z, dim=0).numpy(), atol=1e-5)


def test_benchmarks_are_read_per_rule_and_job(tmp_path):
    root = tmp_path / "results" / "d" / "benchmarks"
    (root / "train" / "xml@xml.weight=0.1").mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (root / "train" / "xml@xml.weight=0.1" / "seed0.tsv").write_text(
        header + "12.5\t0:00:12\t812.3\t1\t1\t1\t0\t0\t90\t11.0\n" + "13.5\t0:00:13\t800.0\t1\t1\t1\t0\t0\t90\t12.0\n"
    )
    (root / "fetch.tsv").write_text(header + "3.0\t0:00:03\t100.0\t1\t1\t1\t0\t0\t90\t2.0\n")
    (root / "broken.tsv").write_text("not a benchmark\n")
    table = environment.benchmarks(tmp_path / "results", "d")
    rows = {(r.rule, r.job): r for r in table.itertuples()}
    assert set(rows) == {("fetch", ""), ("train", "xml@xml.weight=0.1/seed0")}
    assert rows[("train", "xml@xml.weight=0.1/seed0")].wall_s == pytest.approx(13.0)
    assert rows[("train", "xml@xml.weight=0.1/seed0")].max_rss_mb == pytest.approx(812.3)
    assert environment.benchmarks(tmp_path / "nowhere", "d").empty
    assert environment.hms(3725) == "1:02:05"


def test_environment_tolerates_no_git_and_lists_the_libraries(tmp_path):
    state = environment.git_state(tmp_path)
    assert state["commit"] is None and state["note"]
    versions = environment.library_versions()
    for name in ("torch", "torchvision", "faiss", "pytorch-metric-learning", "numpy", "snakemake", "dvc"):
        assert name in versions
    assert versions["torch"] != "not installed"
    assert environment.dvc_hash({"dvc_md5": "abc.dir"}) == "abc.dir"
    assert environment.dvc_hash(None) is None
