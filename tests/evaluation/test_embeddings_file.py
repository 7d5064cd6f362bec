"""The embeddings file: round trip, atomic write, and every refusal naming its problem."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from xbml.errors import DataError
from xbml.evaluation.embeddings_file import load_embeddings, save_embeddings


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    return rng.standard_normal((10, 4)).astype(np.float32), np.arange(10) % 3


def test_round_trip_self_protocol(tmp_path, arrays):
    x, y = arrays
    path = save_embeddings(tmp_path / "emb.npz", x, y, rows=np.arange(10) * 2)
    ef = load_embeddings(path)
    assert np.array_equal(ef.embeddings, x) and ef.embeddings.dtype == np.float32  # stored as given
    assert np.array_equal(ef.labels, y)
    assert ef.query is None and ef.gallery is None and ef.protocol == "query=reference"
    assert np.array_equal(ef.extra["rows"], np.arange(10) * 2)
    assert len(ef) == 10
    assert [p.name for p in tmp_path.iterdir()] == ["emb.npz"]  # no temporary file left


def test_round_trip_query_gallery(tmp_path, arrays):
    x, y = arrays
    q = np.arange(10) < 4
    ef = load_embeddings(save_embeddings(tmp_path / "sub" / "emb.npz", x, y, query=q, gallery=~q))
    assert ef.protocol == "query/gallery"
    assert np.array_equal(ef.query, q) and np.array_equal(ef.gallery, ~q)


def test_path_without_npz_suffix_is_written_exactly_there(tmp_path, arrays):
    x, y = arrays
    save_embeddings(tmp_path / "embeddings.bin", x, y)
    assert [p.name for p in tmp_path.iterdir()] == ["embeddings.bin"]
    assert np.array_equal(load_embeddings(tmp_path / "embeddings.bin").labels, y)


def test_failed_save_keeps_the_old_file(tmp_path, arrays):
    x, y = arrays
    path = save_embeddings(tmp_path / "emb.npz", x, y)
    bad = x.copy()
    bad[2, 2] = np.inf
    with pytest.raises(DataError, match="non-finite"):
        save_embeddings(path, bad, y)
    assert np.array_equal(load_embeddings(path).embeddings, x)
    assert [p.name for p in tmp_path.iterdir()] == ["emb.npz"]


def write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda x, y: dict(labels=y), "missing array.*'embeddings'"),
        (lambda x, y: dict(embeddings=x), "missing array.*'labels'"),
        (lambda x, y: dict(embeddings=x, labels=y[:-1]), "'labels' has shape \\(9,\\) but 'embeddings' has 10 rows"),
        (lambda x, y: dict(embeddings=x[:, 0], labels=y), "2-D"),
        (lambda x, y: dict(embeddings=x[:0], labels=y[:0]), "empty"),
        (lambda x, y: dict(embeddings=np.where(np.eye(10, 4) > 0, np.nan, x), labels=y), "non-finite.*row 0"),
        (lambda x, y: dict(embeddings=x, labels=y + 0.5), "'labels' must be integers"),
        (lambda x, y: dict(embeddings=x, labels=y.astype(str)), "'labels' must be integers"),
        (lambda x, y: dict(embeddings=x.astype(int), labels=y), "floating point"),
        (lambda x, y: dict(embeddings=x, labels=y, query=np.ones(10, bool)), "'gallery' mask missing"),
        (lambda x, y: dict(embeddings=x, labels=y, gallery=np.ones(10, bool)), "'query' mask missing"),
        (
            lambda x, y: dict(embeddings=x, labels=y, query=np.ones(9, bool), gallery=np.ones(10, bool)),
            "'query' mask has shape \\(9,\\) but 'embeddings' has 10 rows",
        ),
        (
            lambda x, y: dict(embeddings=x, labels=y, query=np.ones(10, bool), gallery=np.ones(11, bool)),
            "'gallery' mask has shape",
        ),
        (
            lambda x, y: dict(embeddings=x, labels=y, query=np.zeros(10, bool), gallery=np.ones(10, bool)),
            "'query' mask is empty",
        ),
        (
            lambda x, y: dict(embeddings=x, labels=y, query=np.ones(10, bool), gallery=np.zeros(10, bool)),
            "'gallery' mask is empty",
        ),
        (
            lambda x, y: dict(embeddings=x, labels=y, query=np.full(10, 0.5), gallery=np.ones(10, bool)),
            "'query' mask must be boolean",
        ),
    ],
)
def test_load_refuses_bad_contents(tmp_path, arrays, make, message):
    path = write_npz(tmp_path / "bad.npz", **make(*arrays))
    with pytest.raises(DataError, match=message) as info:
        load_embeddings(path)
    assert str(path) in str(info.value)


def test_integer_masks_of_zeros_and_ones_are_accepted(tmp_path, arrays):
    x, y = arrays
    q = (np.arange(10) < 3).astype(np.int8)
    ef = load_embeddings(write_npz(tmp_path / "e.npz", embeddings=x, labels=y, query=q, gallery=1 - q))
    assert ef.query.dtype == bool and ef.query.sum() == 3


def test_load_refuses_files_that_are_not_npz(tmp_path, arrays):
    with pytest.raises(DataError, match="no such embeddings file"):
        load_embeddings(tmp_path / "missing.npz")
    text = tmp_path / "text.npz"
    text.write_text("embeddings,labels\n1,2\n")
    with pytest.raises(DataError, match="not a valid .npz"):
        load_embeddings(text)
    npy = tmp_path / "plain.npy"
    np.save(npy, arrays[0])
    with pytest.raises(DataError, match="not an .npz archive"):
        load_embeddings(npy)
    truncated = tmp_path / "truncated.npz"
    good = save_embeddings(tmp_path / "good.npz", *arrays)
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataError, match=str(truncated)):
        load_embeddings(truncated)
    pickled = write_npz(tmp_path / "pickled.npz", embeddings=arrays[0], labels=np.array([object()] * 10))
    with pytest.raises(DataError, match="pickled.npz"):
        load_embeddings(pickled)


def test_save_refuses_what_load_would_refuse(tmp_path, arrays):
    x, y = arrays
    with pytest.raises(DataError, match="'labels' has shape"):
        save_embeddings(tmp_path / "e.npz", x, y[:5])
    with pytest.raises(DataError, match="'gallery' mask missing"):
        save_embeddings(tmp_path / "e.npz", x, y, query=np.ones(10, bool))
    with pytest.raises(DataError, match="'query' mask is empty"):
        save_embeddings(tmp_path / "e.npz", x, y, query=np.zeros(10, bool), gallery=np.ones(10, bool))
    with pytest.raises(DataError, match="dtype object"):
        save_embeddings(tmp_path / "e.npz", x, y, paths=np.array([object()] * 10))
    assert list(tmp_path.iterdir()) == []


def _row_set_to(x, row, value, dtype=np.float64):
    out = x.astype(dtype)
    out[row] = value
    return out


@pytest.mark.parametrize(
    "embeddings, message",
    [
        (lambda x: _row_set_to(x, 3, 1e39), "beyond the float32 range .*1e\\+39.* in 1 row\\(s\\), first at row 3"),
        (lambda x: _row_set_to(x, 5, 0.0, np.float32), "all-zero vectors .*first at row 5.*leave those items out"),
        (lambda x: _row_set_to(x, 2, 1e-170), "norm underflows float64 .*first at row 2.*scale the vectors up"),
    ],
    ids=["overflows float32", "zero norm", "norm underflows"],
)
def test_values_that_cannot_be_normalised_are_refused_by_row(tmp_path, arrays, embeddings, message):
    x, y = arrays
    path = write_npz(tmp_path / "bad.npz", embeddings=embeddings(x), labels=y)
    with pytest.raises(DataError, match=message):
        load_embeddings(path)
    with pytest.raises(DataError, match=message):
        save_embeddings(tmp_path / "e.npz", embeddings(x), y)
    assert not (tmp_path / "e.npz").exists()


def test_float64_values_below_float32_range_are_accepted(tmp_path, arrays):
    x, y = arrays
    tiny = x.astype(np.float64) * 1e-60  # every entry is 0 in float32
    assert np.array_equal(load_embeddings(save_embeddings(tmp_path / "e.npz", tiny, y)).embeddings, tiny)


def test_temporaries_of_a_killed_save_are_removed_by_the_next(tmp_path, arrays):
    import tempfile

    # what atomic_path had made when the process was killed: ".emb.npz.<8 random>.npz"
    fd, stale = tempfile.mkstemp(prefix=".emb.npz.", suffix=".npz", dir=tmp_path)
    os.close(fd)
    lookalikes = [".emb.npz.mine.npz", ".emb.npz.abcdefgh.npz.bak", ".other.npz.abcdefgh.npz", "emb.npz.abcdefgh.npz"]
    for name in lookalikes:
        (tmp_path / name).write_text("not ours")
    save_embeddings(tmp_path / "emb.npz", *arrays)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(lookalikes + ["emb.npz"])


def test_remove_stale_temporaries_is_reusable_for_other_outputs(tmp_path):
    import tempfile

    from xbml.atomic import remove_stale_temporaries

    # e.g. a checkpoint written with atomic_path(path, suffix=".tmp")
    fd, stale = tempfile.mkstemp(prefix=".last.pt.", suffix=".tmp", dir=tmp_path)
    os.close(fd)
    (tmp_path / ".last.pt.keep.tmp").write_text("not ours")
    (tmp_path / "last.pt").write_text("the checkpoint")
    assert remove_stale_temporaries(tmp_path / "last.pt", suffix=".tmp") == [Path(stale)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".last.pt.keep.tmp", "last.pt"]
