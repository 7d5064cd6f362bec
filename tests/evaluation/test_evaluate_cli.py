"""`python -m xbml evaluate` as a subprocess: the metrics file, errors, and no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from xbml.evaluation import retrieval_metrics, save_embeddings

REQUIRED = ("map_at_r", "r_precision", "precision_at_1", "recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8")


def xbml(*args, check=False):
    return subprocess.run([sys.executable, "-m", "xbml", *map(str, args)], capture_output=True, text=True, check=check)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(40), 6)
    x = (rng.standard_normal((40, 16))[y] + 0.9 * rng.standard_normal((240, 16))).astype(np.float32)
    return x, y


def test_self_protocol_metrics_file(tmp_path, data):
    x, y = data
    emb = save_embeddings(tmp_path / "emb.npz", x, y)
    res = xbml("evaluate", emb, "--out", tmp_path / "out" / "metrics.json", "--threads", 2, "--chunk-size", 50)
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for key in REQUIRED:
        assert 0 <= m[key] <= 1, key
    expect = retrieval_metrics(x, y)
    for key in REQUIRED:
        assert m[key] == expect[key]
    assert m["protocol"] == "query=reference"
    assert (m["num_queries"], m["num_references"], m["num_classes"], m["embedding_dim"], m["k"]) == (240, 240, 40, 16, 8)
    assert m["seconds"] >= 0
    assert "MAP@R" in res.stderr


def test_query_gallery_metrics_file(tmp_path, data):
    x, y = data
    q = np.arange(len(y)) % 6 < 2
    emb = save_embeddings(tmp_path / "emb.npz", x, y, query=q, gallery=~q)
    res = xbml("evaluate", emb, "--out", tmp_path / "metrics.json", "--recall-at", 1, 2, 4, 8, 16)
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["protocol"] == "query/gallery"
    assert (m["num_queries"], m["num_references"]) == (q.sum(), (~q).sum())
    expect = retrieval_metrics(x, y, q, ~q, ks=(1, 2, 4, 8, 16))
    for key in REQUIRED + ("recall_at_16",):
        assert m[key] == expect[key]


def test_refuses_bad_file_without_traceback_and_writes_nothing(tmp_path, data):
    x, y = data
    bad = tmp_path / "bad.npz"
    with open(bad, "wb") as f:
        np.savez(f, embeddings=x, labels=y[:-3])
    out = tmp_path / "metrics.json"
    res = xbml("evaluate", bad, "--out", out)
    assert res.returncode == 2
    assert "xbml evaluate: error:" in res.stderr and "'labels' has shape" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()
    res = xbml("evaluate", tmp_path / "nothing.npz", "--out", out)
    assert res.returncode == 2 and "no such embeddings file" in res.stderr


def test_refuses_when_no_query_has_a_class_mate(tmp_path, data):
    x, _ = data
    emb = save_embeddings(tmp_path / "emb.npz", x, np.arange(len(x)))
    res = xbml("evaluate", emb, "--out", tmp_path / "m.json")
    assert res.returncode == 2 and "no query has another item of its class" in res.stderr
    assert not (tmp_path / "m.json").exists()


def test_bad_arguments(tmp_path, data):
    emb = save_embeddings(tmp_path / "emb.npz", *data)
    assert xbml("evaluate", emb, "--out", tmp_path / "m.json", "--threads", 0).returncode == 2
    assert xbml("evaluate", emb).returncode == 2  # --out is required


def test_cli_does_not_import_torch(tmp_path, data):
    emb = save_embeddings(tmp_path / "emb.npz", *data)
    code = (
        "import sys\n"
        "from xbml.cli import main\n"
        f"rc = main(['evaluate', {str(emb)!r}, '--out', {str(tmp_path / 'm.json')!r}])\n"
        "assert rc == 0, rc\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'pandas', 'matplotlib') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def _refused(tmp_path, x, y, message, **masks):
    emb = tmp_path / "emb.npz"
    with open(emb, "wb") as f:  # written directly: save_embeddings refuses some of these itself
        np.savez(f, embeddings=x, labels=y, **masks)
    out = tmp_path / "metrics.json"
    out.write_text("old metrics\n")
    res = xbml("evaluate", emb, "--out", out)
    assert res.returncode == 2, res.stderr
    assert "xbml evaluate: error:" in res.stderr and str(emb) in res.stderr and message in res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert out.read_text() == "old metrics\n"  # the old output is left untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npz", "metrics.json"]


def test_refuses_values_beyond_float32_range_by_name(tmp_path, data):
    x, y = data
    _refused(tmp_path, x.astype(np.float64) * 1e39, y, "beyond the float32 range")


def test_refuses_all_zero_rows_by_name(tmp_path, data):
    x, y = data
    x = x.copy()
    x[17] = 0
    _refused(tmp_path, x, y, "all-zero vectors (zero norm, no direction to compare) in 1 row(s), first at row 17")


def test_refuses_a_single_class_before_searching(tmp_path, data):
    x, _ = data
    _refused(tmp_path, x, np.zeros(len(x), dtype=np.int64), "single class")


def test_refuses_a_gallery_without_the_queries_classes(tmp_path, data):
    x, y = data
    q = y < 20
    _refused(tmp_path, x, y, "no query has another item of its class", query=q, gallery=~q)


def test_float64_values_below_float32_range_give_the_right_metrics(tmp_path, data):
    x, y = data
    tiny = x.astype(np.float64) * 1e-50  # 0 once cast to float32: normalised in float64 first
    emb = save_embeddings(tmp_path / "emb.npz", tiny, y)
    res = xbml("evaluate", emb, "--out", tmp_path / "m.json")
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    expect = retrieval_metrics(x, y)
    for key in REQUIRED:
        assert m[key] == pytest.approx(expect[key], abs=1e-9), key
