"""Loading real images: the protocol's transforms on uint8, per-image seeds (in workers and after a
resume), and errors that name the file."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from miniature import make_cub, md5  # noqa: E402

from xbml.datasets.array_shift import shift_draws  # noqa: E402
from xbml.datasets.manifest import read_manifest  # noqa: E402
from xbml.datasets.registry import get_dataset  # noqa: E402
from xbml.datasets.torch_data import ManifestImages, training_batches  # noqa: E402
from xbml.errors import DataError  # noqa: E402


def _prepared_cub(work):
    mini = make_cub(work / "mini", per_class=2)
    archive = mini.files["CUB_200_2011.tgz"]
    ds = get_dataset("cub200")
    sources = {
        "download_dir": str(work / "downloads"),
        "files": [{"name": "CUB_200_2011.tgz", "md5": md5(archive), "local": str(archive)}],
        "expected_counts": dict(mini.counts),
    }
    ds.fetch(work / "raw", sources=sources, progress=False)
    ds.prepare(work / "raw", work / "prepared", val_fraction=0.0, seed=0)
    return read_manifest(work / "prepared")


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    return _prepared_cub(tmp_path_factory.mktemp("cub"))


def _images(manifest, train):
    rows = manifest.indices("train")
    return ManifestImages(manifest, rows, manifest.labels[rows], image_size=48, resize=56, train=train)


def test_eval_transform_resizes_and_centre_crops(cub):
    ds = _images(cub, train=False)
    x, y = ds[0]
    assert x.shape == (3, 48, 48) and x.dtype == torch.uint8  # normalised on the device
    assert torch.equal(x, ds[0][0])  # no randomness at evaluation
    assert y == cub.labels[ds.rows[0]]


def test_train_augmentation_is_decided_by_the_items_seed_alone(cub):
    ds = _images(cub, train=True)
    row = int(ds.rows[0])
    a, _ = ds[(row, 11)]
    torch.manual_seed(123)  # the global RNG must not matter
    b, _ = ds[(row, 11)]
    c, _ = ds[(row, 12)]
    assert a.shape == (3, 48, 48)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_corrupt_and_missing_images_are_reported_by_path(cub):
    ds = _images(cub, train=False)
    broken = cub.image_root / cub.images[int(ds.rows[1])]
    broken.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(DataError, match=f"corrupt image file {broken}"):
        ds[1]
    missing = cub.image_root / cub.images[int(ds.rows[2])]
    missing.unlink()
    with pytest.raises(DataError, match=f"image file missing: {missing}"):
        ds[2]
    assert ds[0][0].shape == (3, 48, 48)  # the others still load


def test_a_batch_is_the_same_in_workers_or_the_main_process_first_time_or_after_a_resume(tmp_path):
    from xbml.datasets.torch_data import training_batches
    from xbml.samplers import ClassDisjointHalvesSampler

    ds = _images(_prepared_cub(tmp_path), train=True)  # its own copy: another test damages files
    _, contiguous = np.unique(ds.targets, return_inverse=True)
    sampler = ClassDisjointHalvesSampler(contiguous, 4, 2, seed=5)
    main = [(x.clone(), y.clone()) for x, y in training_batches(ds, sampler, 0, 4, workers=0, pin_memory=False)]
    workers = list(training_batches(ds, sampler, 0, 4, workers=2, pin_memory=False))
    resumed = list(training_batches(ds, sampler, 2, 4, workers=0, pin_memory=False, channels_last=True))
    assert all(x.dtype == torch.uint8 and x.shape == (8, 3, 48, 48) for x, _ in main)
    for (a, la), (b, lb) in zip(main, workers):
        assert torch.equal(a, b) and torch.equal(la, lb)
    for (a, _), (b, _) in zip(main[2:], resumed):
        assert torch.equal(a, b)
    assert resumed[0][0].is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(main[0][0], main[1][0])


def test_an_array_store_item_is_its_uint8_image_shifted_with_the_top_left_pixel_around(tmp_path):
    """The glyph path: uint8 out, the shift drawn from the item's seed, the uncovered border
    filled with the image's top-left value, as the first round's float padding did."""
    from conftest import make_blob_dataset

    manifest = read_manifest(make_blob_dataset(tmp_path / "prepared", classes=4, per_class=3))
    rows = np.arange(len(manifest))
    ds = ManifestImages(manifest, rows, manifest.labels, 32, train=True)
    store = np.load(tmp_path / "prepared/store.npz")["images"]
    shifts = set()
    for row in rows:
        for seed in range(10):
            item = ds.load(int(row), seed)
            assert item.dtype == torch.uint8 and item.shape == (1, 32, 32)
            (dy,), (dx,) = shift_draws([seed], 2)  # pad = 32 // 16 = 2
            assert -2 <= dy <= 2 and -2 <= dx <= 2
            padded = np.pad(store[row], 2, constant_values=store[row][0, 0])
            assert np.array_equal(item[0].numpy(), padded[2 + dy : 34 + dy, 2 + dx : 34 + dx]), (row, seed)
            shifts.add((dy, dx))
    assert len(shifts) >= 5  # the seeds move the image (10 seeds, 25 possible shifts)
    plain = ManifestImages(manifest, rows, manifest.labels, 32, train=False)
    assert np.array_equal(plain.load(0).numpy()[0], store[0])


def test_glyph_batches_are_their_items_stacked(tmp_path):
    """The in-memory training path shifts a whole batch at once; a DataLoader worker loads item by
    item: both give the same images and labels."""
    from conftest import make_blob_dataset

    from xbml.samplers.class_disjoint_halves_sampler import ClassDisjointHalvesSampler

    manifest = read_manifest(make_blob_dataset(tmp_path / "prepared", classes=6, per_class=4))
    rows = np.arange(len(manifest))[::-1].copy()  # manifest rows and set positions differ
    targets = np.unique(manifest.labels[rows], return_inverse=True)[1]
    ds = ManifestImages(manifest, rows, targets, 32, train=True)
    sampler = ClassDisjointHalvesSampler(targets, 4, 2, seed=3)
    batches = list(training_batches(ds, sampler, 0, 5, workers=0, pin_memory=False))
    assert len(batches) == 5
    for i, (images, labels) in enumerate(batches):
        idx, seeds = sampler.batch(i)
        items = [ds[(int(r), int(s))] for r, s in zip(rows[idx], seeds)]
        assert torch.equal(images, torch.stack([x for x, _ in items]))
        assert labels.dtype == torch.int64 and labels.tolist() == [y for _, y in items] == targets[idx].tolist()
