"""Concatenated embeddings of several models (MLRC's 4-fold protocol), and `xbml concatenate`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from xbml.errors import DataError
from xbml.evaluation import retrieval_metrics
from xbml.evaluation.concatenation import concatenate
from xbml.evaluation.embeddings_file import load_embeddings, save_embeddings


def _files(tmp_path, n_models=3, dims=(4, 6, 8)):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 4)
    paths = []
    for k in range(n_models):
        path = tmp_path / f"model{k}.npz"
        # scaled differently per model: the concatenation must weigh each model the same
        emb = (10.0 ** k) * rng.standard_normal((len(labels), dims[k])).astype(np.float32)
        save_embeddings(path, emb, labels, rows=np.arange(len(labels)) + 100)
        paths.append(path)
    return paths, labels


def test_each_model_is_normalised_then_placed_side_by_side(tmp_path):
    paths, labels = _files(tmp_path)
    joined = concatenate(paths)
    parts = [load_embeddings(p).embeddings.astype(np.float64) for p in paths]
    assert joined.embeddings.shape == (len(labels), 4 + 6 + 8)
    start = 0
    for part in parts:
        block = joined.embeddings[:, start:start + part.shape[1]]
        np.testing.assert_allclose(block, part / np.linalg.norm(part, axis=1, keepdims=True), rtol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(block, axis=1), 1.0, rtol=1e-6)
        start += part.shape[1]
    np.testing.assert_array_equal(joined.labels, labels)
    np.testing.assert_array_equal(joined.extra["rows"], np.arange(len(labels)) + 100)


def test_concatenating_copies_of_one_model_gives_its_metrics(tmp_path):
    paths, labels = _files(tmp_path, n_models=1, dims=(6,))
    one = load_embeddings(paths[0])
    twice = concatenate([paths[0], paths[0]])
    assert retrieval_metrics(twice.embeddings, labels)["map_at_r"] == pytest.approx(
        retrieval_metrics(one.embeddings, labels)["map_at_r"])


@pytest.mark.parametrize("what", ["labels", "rows", "length"])
def test_files_of_different_items_are_refused(tmp_path, what):
    paths, labels = _files(tmp_path, n_models=2, dims=(4, 4))
    other = load_embeddings(paths[1])
    emb, rows = other.embeddings, other.extra["rows"]
    if what == "labels":
        labels = labels[::-1].copy()
    elif what == "rows":
        rows = rows[::-1].copy()
    else:
        emb, labels, rows = emb[:-1], labels[:-1], rows[:-1]
    save_embeddings(paths[1], emb, labels, rows=rows)
    with pytest.raises(DataError, match="embed the same split"):
        concatenate(paths)


def test_cli_writes_the_file_and_refuses_a_mismatch_with_exit_2(tmp_path):
    paths, labels = _files(tmp_path, n_models=2, dims=(4, 6))
    out = tmp_path / "joined.npz"
    ok = subprocess.run([sys.executable, "-m", "xbml", "concatenate", *map(str, paths), "--out", str(out)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert load_embeddings(out).embeddings.shape == (len(labels), 10)
    save_embeddings(paths[1], load_embeddings(paths[1]).embeddings[:-1], labels[:-1])
    bad = subprocess.run([sys.executable, "-m", "xbml", "concatenate", *map(str, paths), "--out",
                          str(tmp_path / "bad.npz")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "items" in bad.stderr and not (tmp_path / "bad.npz").exists()
