"""The prepared uint8 image store: written by `xbml prepare --image-store`, read memory-mapped,
evaluation identical to the original files', training the same regions, damage caught."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from miniature import make_cub, md5  # noqa: E402
from test_fast_transforms import photo  # noqa: E402

from xbml.datasets import fast_transforms as ft  # noqa: E402
from xbml.datasets.image_store import DATA_NAME, INDEX_NAME, STORE_FOLDER, ImageStore  # noqa: E402
from xbml.datasets.manifest import read_manifest  # noqa: E402
from xbml.datasets.registry import get_dataset  # noqa: E402
from xbml.datasets.torch_data import ManifestImages  # noqa: E402
from xbml.errors import DataError  # noqa: E402

SIZE, RESIZE = 48, 56


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A miniature CUB with photo-like JPEGs of CUB's aspect (4:3, 80x60), prepared without the
    store, and by the CLI with it (short side = the evaluation resize)."""
    work = tmp_path_factory.mktemp("cub")
    mini = make_cub(work / "mini", per_class=2)
    archive = mini.files["CUB_200_2011.tgz"]
    ds = get_dataset("cub200")
    sources = {
        "download_dir": str(work / "downloads"),
        "files": [{"name": "CUB_200_2011.tgz", "md5": md5(archive), "local": str(archive)}],
        "expected_counts": dict(mini.counts),
    }
    ds.fetch(work / "raw", sources=sources, progress=False)
    root = ds.image_root(work / "raw")
    for k, path in enumerate(sorted(root.rglob("*.jpg"))):
        Image.fromarray(photo(60, 80, k)).save(path, quality=90)
    ds.prepare(work / "raw", work / "original", val_fraction=0.0)
    cmd = [sys.executable, "-m", "xbml", "prepare", "cub200", "--raw", str(work / "raw"), "--val-fraction", "0"]
    done = subprocess.run([*cmd, "--out", str(work / "store"), "--image-store", str(RESIZE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return read_manifest(work / "original"), read_manifest(work / "store")


def _items(manifest, train, **kw):
    rows = np.arange(len(manifest))
    return ManifestImages(manifest, rows, manifest.labels[rows], image_size=SIZE, resize=RESIZE, train=train, **kw)


def test_the_store_is_recorded_and_holds_every_image_at_the_short_side(prepared):
    _, with_store = prepared
    assert with_store.info["image_store"] == STORE_FOLDER
    store = ImageStore(with_store.image_store)
    assert len(store) == len(with_store)
    meta = json.loads((with_store.image_store / "images.json").read_text())
    assert meta["short_side"] == RESIZE and meta["data_sha256"] == with_store.info["image_store_sha256"]
    assert store.image(0).shape == (3, RESIZE, 74) and store.original_size(0) == (60, 80)  # int(56 * 80 / 60)


def test_evaluation_from_the_store_equals_the_original_files_to_the_last_bit(prepared):
    original, with_store = prepared
    a, b = _items(original, train=False), _items(with_store, train=False)
    assert b.image_store is not None and a.image_store is None
    for i in range(len(a)):
        assert torch.equal(a[i][0], b[i][0]), i
    # `original` is the reference option: the same manifest, read from the JPEGs
    c = _items(with_store, train=False, image_source="original")
    assert c.image_store is None and torch.equal(c[3][0], a[3][0])


def test_training_from_the_store_crops_the_same_region(prepared):
    original, with_store = prepared
    a, b = _items(original, train=True), _items(with_store, train=True)
    diffs = []
    for seed in range(20):
        x, y = a[(0, seed)][0], b[(0, seed)][0]
        assert x.shape == y.shape == (3, SIZE, SIZE) and y.dtype == torch.uint8
        assert torch.equal(y, b[(0, seed)][0])  # the item's seed alone decides it
        diffs.append((x.float() - y.float()).abs().mean().item())
    # the same region, resampled from a 0.7x copy: close, not equal (mean abs difference in 0-255)
    assert np.mean(diffs) < 8.0


def test_a_damaged_store_is_caught_naming_the_file_and_the_fix(prepared, tmp_path):
    _, with_store = prepared
    store = ImageStore(with_store.image_store)
    data = (with_store.image_store / DATA_NAME).read_bytes()
    copy = tmp_path / STORE_FOLDER
    copy.mkdir()
    for name in ("images.json", INDEX_NAME):
        (copy / name).write_bytes((with_store.image_store / name).read_bytes())
    offset = int(store.index[2, 0])
    damaged = bytearray(data)
    damaged[offset + 17] ^= 0xFF
    (copy / DATA_NAME).write_bytes(bytes(damaged))
    damaged_store = ImageStore(copy)
    assert torch.equal(damaged_store.image(1), store.image(1))  # the others still read
    with pytest.raises(DataError, match=rf"image store {copy / DATA_NAME} is damaged: image 2 .*delete {copy}"):
        damaged_store.image(2)
    (copy / DATA_NAME).write_bytes(data[:-5])
    with pytest.raises(DataError, match="truncated or damaged"):
        ImageStore(copy)
    (copy / DATA_NAME).write_bytes(data)
    index = bytearray((copy / INDEX_NAME).read_bytes())
    index[-3] ^= 0x01
    (copy / INDEX_NAME).write_bytes(bytes(index))
    with pytest.raises(DataError, match=f"image store index {copy / INDEX_NAME} does not match"):
        ImageStore(copy)


def test_training_on_a_damaged_store_ends_with_one_line_and_exit_2(prepared, tmp_path, capsys):
    from xbml.cli import main  # in process: the subprocess CLI is exercised by the fixture's prepare

    _, with_store = prepared
    folder = tmp_path / "prepared"
    folder.mkdir()
    for name in ("manifest.csv", "dataset.json"):
        (folder / name).write_bytes((with_store.root / name).read_bytes())
    (folder / STORE_FOLDER).mkdir()
    for name in ("images.json", INDEX_NAME, DATA_NAME):
        (folder / STORE_FOLDER / name).write_bytes((with_store.image_store / name).read_bytes())
    with open(folder / STORE_FOLDER / DATA_NAME, "r+b") as f:
        f.truncate(100)
    code = main(["train", "--out", str(tmp_path / "run"), "--set", f"data.prepared={folder}",
                 "--set", "data.image_size=32", "--set", "model.backbone=resnet18"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.strip().splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in err
    assert "truncated or damaged" in lines[0] and "--image-store again" in lines[0]
    assert not (tmp_path / "run" / "model.pt").exists()


def test_asking_for_a_store_that_is_not_there_names_the_fix(prepared):
    original, _ = prepared
    with pytest.raises(DataError, match="has no image store; run `python -m xbml prepare` with --image-store"):
        _items(original, train=False, image_source="store")


def test_an_intact_store_is_kept_and_a_damaged_one_rewritten(prepared, tmp_path):
    from xbml.datasets.image_store import build_image_store

    original, _ = prepared
    paths = [original.image_root / p for p in original.images[:4]]
    first = build_image_store(paths, tmp_path / "s", 32, None, False)
    stamp = (tmp_path / "s" / DATA_NAME).stat().st_mtime_ns
    assert build_image_store(paths, tmp_path / "s", 32, None, False) == first
    assert (tmp_path / "s" / DATA_NAME).stat().st_mtime_ns == stamp  # kept
    with open(tmp_path / "s" / DATA_NAME, "r+b") as f:
        f.write(b"\x00\x01\x02")
    assert build_image_store(paths, tmp_path / "s", 32, None, False)["data_sha256"] == first["data_sha256"]
    assert torch.equal(ImageStore(tmp_path / "s").image(0), ft.resize_short_side(ft.decode_pil(paths[0]), 32))
