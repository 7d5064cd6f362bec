"""The embedded `glyphs` dataset: class selection, deterministic generation, atomic fetch,
class-disjoint prepare and the CLI, on small subsets (the full selection is computed once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from xbml.datasets import glyphs
from xbml.datasets.glyphs import Glyphs
from xbml.datasets.glyphs import dataset as glyph_dataset
from xbml.datasets.glyphs import store as glyph_store
from xbml.datasets.manifest import read_manifest
from xbml.errors import ConfigError, DataError

SMALL = {"max_classes": 40, "images_per_class": 6}
ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def selection():
    return glyphs.select_classes()


@pytest.fixture(scope="module")
def small_raw(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("glyphs") / "raw"
    Glyphs.fetch(raw, dict(SMALL), seed=0, progress=False)
    return raw


def _load(raw: Path) -> dict[str, np.ndarray]:
    with np.load(raw / "glyphs.npz") as z:
        return {k: z[k] for k in z.files}


# --------------------------------------------------------------------------- class selection


def test_full_selection_is_large_and_clean(selection):
    classes = selection.classes
    assert len(classes) >= 1000
    assert list(classes) == sorted(set(classes))
    for cp in classes:
        ch = chr(cp)
        assert unicodedata.decomposition(ch) == "", f"U+{cp:04X} has a decomposition"
        assert unicodedata.category(ch)[0] not in "CZM", f"U+{cp:04X} is not a visible base character"
        assert len(selection.fonts[cp]) >= glyphs.MIN_FONTS
    for cp in (0x41, 0x61, 0x30, 0x3B4, 0x416, 0x10D0):  # A a 0 delta zhe (Cyrillic) an (Georgian)
        assert cp in classes, f"U+{cp:04X} should be a class"
    assert 0xE9 not in classes  # e acute: decomposes to e + combining acute


@pytest.mark.parametrize(
    "latin, others",
    [
        (0x41, (0x391, 0x410)),  # A / Greek Alpha / Cyrillic A
        (0x6F, (0x3BF, 0x43E)),  # o / Greek omicron / Cyrillic o
        (0x54, (0x3A4, 0x422)),  # T / Tau / Te
        (0x63, (0x441,)),  # c / Cyrillic es
    ],
)
def test_lookalikes_across_scripts_keep_one(selection, latin, others):
    assert latin in selection.classes
    for cp in others:
        assert cp not in selection.classes, f"U+{cp:04X} looks like U+{latin:04X} but was kept"
        assert selection.dropped_lookalikes[cp] == latin


def test_no_kept_pair_is_a_lookalike(selection):
    _, sigs = glyphs.survey()
    assert glyphs.lookalike_pairs(selection.classes, sigs) == []
    # while the full candidate set does have look-alikes, each dropped one next to a kept one
    inked, _ = glyphs.survey()
    assert set(selection.classes) | set(selection.dropped_lookalikes) == set(inked)
    for dropped, kept in list(selection.dropped_lookalikes.items())[:50]:
        assert kept < dropped and kept in selection.classes
        assert (kept, dropped) in set(glyphs.lookalike_pairs([kept, dropped], sigs))


@pytest.mark.parametrize(
    "a, b, alike",
    [
        ("A", "\u0391", True),  # Latin A / Greek Alpha: the same outline
        ("x", "\u0445", True),  # Latin x / Cyrillic ha
        ("K", "\u041a", True),  # Latin K / Cyrillic Ka: designed a little differently, still alike
        ("E", "F", False),  # similar overall, but a whole stroke apart
        ("O", "Q", False),
        ("u", "n", False),  # STIX draws their arches as hairlines: they must still count
        ("l", "I", False),
        ("b", "d", False),  # mirror images
        ("p", "q", False),
    ],
)
def test_lookalike_rule(a, b, alike):
    _, sigs = glyphs.survey()
    pair = tuple(sorted((ord(a), ord(b))))
    assert (pair in glyphs.lookalike_pairs(pair, sigs)) is alike


# --------------------------------------------------------------------------- generation


def test_same_seed_gives_identical_bytes(tmp_path, small_raw):
    again = tmp_path / "again"
    Glyphs.fetch(again, dict(SMALL), seed=0, progress=False)
    assert (again / "glyphs.npz").read_bytes() == (small_raw / "glyphs.npz").read_bytes()
    assert (again / "glyphs.json").read_bytes() == (small_raw / "glyphs.json").read_bytes()


def test_different_seed_differs(tmp_path, small_raw):
    other = tmp_path / "other"
    Glyphs.fetch(other, dict(SMALL), seed=1, progress=False)
    a, b = _load(small_raw), _load(other)
    np.testing.assert_array_equal(a["labels"], b["labels"])  # same classes: the protocol is fixed
    differing = np.mean([not np.array_equal(x, y) for x, y in zip(a["images"], b["images"])])
    assert differing > 0.95
    meta = json.loads((other / "glyphs.json").read_text())
    assert meta["params"]["seed"] == 1


def test_arrays_and_metadata(small_raw, selection):
    arrays = _load(small_raw)
    meta = json.loads((small_raw / "glyphs.json").read_text())
    images, labels, fonts = arrays["images"], arrays["labels"], arrays["fonts"]
    n = SMALL["max_classes"] * SMALL["images_per_class"]
    size = 24  # the default image size
    assert images.shape == (n, size, size) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and fonts.dtype.kind == "i"
    assert len(np.unique(labels)) == SMALL["max_classes"]
    assert np.all(np.bincount(np.unique(labels, return_inverse=True)[1]) == SMALL["images_per_class"])
    # every image is drawn in a font that has its character, and shows a glyph (not blank)
    for cp, f in zip(labels, fonts):
        assert int(f) in {fi for fi, _ in selection.fonts[int(cp)]}
    padded = np.pad(images.astype(float), ((0, 0), (1, 1), (1, 1)), mode="edge")
    smooth = sum(padded[:, i : i + size, j : j + size] for i in range(3) for j in range(3)) / 9  # noise / 3
    contrast = smooth.max(axis=(1, 2)) - np.median(smooth, axis=(1, 2))
    assert np.mean(contrast > 35) > 0.97, np.sort(contrast)[:10]
    # images of a class vary (augmentation), different classes differ more than noise
    assert not np.array_equal(images[0], images[1])
    assert meta["name"] == "glyphs"
    assert meta["num_classes"] == SMALL["max_classes"]
    assert meta["params"]["images_per_class"] == SMALL["images_per_class"]
    assert meta["fonts"] == list(glyphs.font_table().names)
    assert meta["arrays_sha256"] == glyphs.arrays_sha256(images, labels, fonts)
    assert meta["file_sha256"] == glyphs.file_sha256(small_raw / "glyphs.npz")
    assert sorted(meta["code_points"]) == sorted(np.unique(labels).tolist())


def test_independent_of_worker_count_and_order(selection):
    classes = glyphs.subset_classes(selection.classes, 12)
    one = glyphs.generate(classes, selection.fonts, 5, 32, seed=3, workers=1)
    two = glyphs.generate(classes, selection.fonts, 5, 32, seed=3, workers=2)
    three = glyphs.generate(classes, selection.fonts, 5, 32, seed=3, workers=3)
    for a, b in ((one, two), (one, three)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    # order-independent: a class's images do not depend on which classes come before it
    rev = glyphs.generate(classes[::-1], selection.fonts, 5, 32, seed=3, workers=1)
    cp = classes[4]
    np.testing.assert_array_equal(one[0][one[1] == cp], rev[0][rev[1] == cp])
    # and every image is its own: image k of a class is the same when fewer are asked for
    fewer = glyphs.generate(classes[:2], selection.fonts, 3, 32, seed=3, workers=1)
    np.testing.assert_array_equal(fewer[0][:3], one[0][:3])


def test_image_size_parameter(tmp_path):
    raw = tmp_path / "raw"
    Glyphs.fetch(raw, {"max_classes": 3, "images_per_class": 2, "image_size": 32}, seed=0, progress=False)
    assert _load(raw)["images"].shape == (6, 32, 32)


# --------------------------------------------------------------------------- sources


def test_unknown_source_key_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        Glyphs.fetch(tmp_path / "raw", {"images_per_klass": 3}, seed=0, progress=False)
    msg = str(info.value)
    assert "images_per_klass" in msg
    for key in ("images_per_class", "image_size", "max_classes", "test_fraction"):
        assert key in msg
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    "sources",
    [{"images_per_class": 0}, {"image_size": "32"}, {"max_classes": -1}, {"test_fraction": 1.0}],
)
def test_invalid_source_values(tmp_path, sources):
    with pytest.raises(ConfigError):
        Glyphs.fetch(tmp_path / "raw", sources, seed=0, progress=False)


# --------------------------------------------------------------------------- atomic fetch


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir()) if folder.parent.exists() else []


def test_interrupted_fetch_leaves_nothing(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    real = glyphs.render_image
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 50:
            raise RuntimeError("simulated crash in the middle of the generation")
        return real(*args, **kwargs)

    monkeypatch.setattr(glyph_dataset, "DEFAULT_WORKERS", 1)  # in-process, so the patch applies
    monkeypatch.setattr(glyph_store, "render_image", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Glyphs.fetch(raw, dict(SMALL), seed=0, progress=False)
    assert calls["n"] > 50
    assert not raw.exists()
    assert _siblings(raw) == []  # no temporary folder left behind either


def test_failed_regeneration_keeps_the_previous_set(tmp_path, small_raw, monkeypatch):
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    before = (raw / "glyphs.npz").read_bytes()

    def failing(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(glyph_dataset, "DEFAULT_WORKERS", 1)
    monkeypatch.setattr(glyph_store, "render_image", failing)
    with pytest.raises(RuntimeError):
        Glyphs.fetch(raw, {**SMALL, "images_per_class": 7}, seed=0, progress=False)
    assert (raw / "glyphs.npz").read_bytes() == before
    assert _siblings(raw) == ["raw"]


# runs `xbml fetch` and interrupts it (a KeyboardInterrupt, what Ctrl-C raises) right after the
# array file of the new raw folder is written: a known point inside the write, not a race
# against the clock
INTERRUPT_WHILE_WRITING = """
import sys
import xbml.datasets.glyphs.store as store
from xbml.cli import main
write = store.write_npz
def write_then_interrupt(path, arrays):
    write(path, arrays)
    raise KeyboardInterrupt
store.write_npz = write_then_interrupt
sys.exit(main(sys.argv[1:]))
"""


def test_interrupted_cli_fetch_leaves_no_raw_dir(tmp_path):
    raw = tmp_path / "raw"
    sources = tmp_path / "sources.yaml"
    sources.write_text("glyphs:\n  max_classes: 20\n  images_per_class: 5\n")
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPT_WHILE_WRITING, "fetch", "glyphs", "--out", str(raw), "--sources",
         str(sources), "--no-progress"], env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 130, proc.stderr  # the CLI's answer to an interrupt
    assert "interrupted" in proc.stderr
    assert not raw.exists()
    assert _siblings(raw) == ["sources.yaml"]


def _stale_and_lookalikes(target: Path) -> tuple[list[Path], list[Path]]:
    """What a killed fetch/prepare of `target` leaves (its own mkdtemp names), and names it did not make."""
    import tempfile

    stale = [Path(tempfile.mkdtemp(prefix=f".{target.name}{infix}", dir=target.parent)) for infix in (".tmp-", ".old-")]
    (stale[0] / "glyphs.npz").write_bytes(b"half written")
    lookalikes = [target.parent / f".{target.name}{name}" for name in (".tmp-mine", ".old-abcd12345", "x.tmp-abcd1234")]
    for p in lookalikes:
        p.mkdir()
    return stale, lookalikes


def test_next_fetch_removes_what_a_killed_fetch_left(tmp_path, small_raw):
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    stale, lookalikes = _stale_and_lookalikes(raw)
    Glyphs.fetch(raw, dict(SMALL), seed=0, progress=False)  # already complete: nothing to generate
    assert not any(p.exists() for p in stale)
    assert all(p.is_dir() for p in lookalikes)


def test_next_prepare_removes_what_a_killed_prepare_left(tmp_path, small_raw):
    out = tmp_path / "prepared"
    out.mkdir()
    stale, lookalikes = _stale_and_lookalikes(out)
    Glyphs.prepare(small_raw, out)
    assert not any(p.exists() for p in stale)
    assert all(p.is_dir() for p in lookalikes)
    assert (out / "dataset.json").is_file()


def test_second_fetch_is_a_noop(tmp_path, small_raw, caplog):
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    stamps = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    inode = raw.stat().st_ino
    time.sleep(0.01)
    with caplog.at_level("INFO", logger="xbml.datasets.glyphs"):
        Glyphs.fetch(raw, dict(SMALL), seed=0, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == stamps
    assert raw.stat().st_ino == inode
    assert "nothing to do" in caplog.text
    # other parameters: generated again, in place of the old set
    Glyphs.fetch(raw, {**SMALL, "images_per_class": 2}, seed=0, progress=False)
    assert _load(raw)["images"].shape[0] == SMALL["max_classes"] * 2
    assert _siblings(raw) == ["raw"]


def test_corrupt_set_is_generated_again(tmp_path, small_raw):
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    with open(raw / "glyphs.npz", "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    Glyphs.fetch(raw, dict(SMALL), seed=0, progress=False)
    assert (raw / "glyphs.npz").read_bytes() == (small_raw / "glyphs.npz").read_bytes()


def test_fetch_refuses_a_foreign_folder(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="not a glyphs raw folder"):
        Glyphs.fetch(raw, dict(SMALL), seed=0, progress=False)
    assert (raw / "thesis.tex").read_text() == "precious"


# --------------------------------------------------------------------------- prepare


def test_prepare_class_disjoint_splits(tmp_path, small_raw):
    out = tmp_path / "prepared"
    Glyphs.prepare(small_raw, out, val_fraction=0.25, seed=0)
    m = read_manifest(out)
    labels, splits = m.labels, m.splits
    assert len(m) == SMALL["max_classes"] * SMALL["images_per_class"]
    per_split = {s: set(np.unique(labels[splits == s]).tolist()) for s in ("train", "val", "test")}
    assert per_split["train"] and per_split["val"] and per_split["test"]
    assert not per_split["train"] & per_split["val"]
    assert not per_split["train"] & per_split["test"]
    assert not per_split["val"] & per_split["test"]
    for cp in np.unique(labels):  # all images of a class share one split
        assert len(set(splits[labels == cp])) == 1
    assert len(per_split["test"]) == SMALL["max_classes"] // 2  # test_fraction 0.5
    assert len(per_split["val"]) == round((SMALL["max_classes"] // 2) * 0.25)
    assert set(m.roles) == {"both"}
    assert set(m.folds[splits != "train"]) == {-1}
    assert set(m.folds[splits == "train"]) == {0, 1, 2, 3}
    # image column points at rows of the array store, whose labels match the manifest
    assert m.images[:3] == ["#0", "#1", "#2"]
    info = json.loads((out / "dataset.json").read_text())
    assert info["name"] == "glyphs" and info["channels"] == 1 and info["image_size"] == 24
    assert info["protocol"] == "self"
    assert not os.path.isabs(info["array_store"])
    assert m.array_store == (small_raw / "glyphs.npz").resolve()
    store_labels = _load(small_raw)["labels"]
    rows = np.array([int(s[1:]) for s in m.images])
    np.testing.assert_array_equal(store_labels[rows], labels)
    assert [p.name for p in out.parent.iterdir()] == ["prepared"]  # no temporary folder left


def test_prepare_test_classes_are_fixed_and_val_follows_seed(tmp_path, small_raw):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    Glyphs.prepare(small_raw, a, val_fraction=0.25, seed=0)
    Glyphs.prepare(small_raw, b, val_fraction=0.25, seed=0)
    Glyphs.prepare(small_raw, c, val_fraction=0.25, seed=5)
    ma, mc = read_manifest(a), read_manifest(c)
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
    np.testing.assert_array_equal(ma.classes("test"), mc.classes("test"))
    assert not np.array_equal(ma.classes("val"), mc.classes("val"))


def test_prepare_without_fetch_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="xbml fetch glyphs"):
        Glyphs.prepare(tmp_path / "nothing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prepare_detects_a_modified_store(tmp_path, small_raw):
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    with open(raw / "glyphs.npz", "ab") as f:
        f.write(b"x")
    with pytest.raises(DataError, match="checksum"):
        Glyphs.prepare(raw, tmp_path / "out")


# --------------------------------------------------------------------------- CLI


def test_cli_fetch_and_prepare(tmp_path):
    sources = tmp_path / "sources.yaml"
    sources.write_text("glyphs:\n  max_classes: 10\n  images_per_class: 4\n  test_fraction: 0.4\n")
    raw, out = tmp_path / "data" / "raw" / "glyphs", tmp_path / "data" / "prepared" / "glyphs"
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "xbml", *args], env=_env(), capture_output=True, text=True, timeout=300
    )
    r = run("fetch", "glyphs", "--out", str(raw), "--sources", str(sources), "--seed", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    r = run("prepare", "glyphs", "--raw", str(raw), "--out", str(out), "--val-fraction", "0.2", "--seed", "1")
    assert r.returncode == 0, r.stderr
    m = read_manifest(out)
    assert len(m) == 40
    assert len(m.classes("test")) == 4
    info = json.loads((out / "dataset.json").read_text())
    assert info["array_store"] == os.path.join("..", "..", "raw", "glyphs", "glyphs.npz")
    assert json.loads((raw / "glyphs.json").read_text())["params"]["seed"] == 2
    # a bad key in the sources file: exit code 2 and a message naming it, no traceback
    sources.write_text("glyphs:\n  colour: red\n")
    r = run("fetch", "glyphs", "--out", str(tmp_path / "raw2"), "--sources", str(sources), "--no-progress")
    assert r.returncode == 2
    assert "colour" in r.stderr and "images_per_class" in r.stderr and "Traceback" not in r.stderr
