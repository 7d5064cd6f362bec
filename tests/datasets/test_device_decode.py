"""Batched JPEG decoding where the model runs (nvJPEG on CUDA): device-agnostic, so on the CPU the
batch must equal the CPU loader's items exactly; stacking for channels_last models."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from test_fast_transforms import photo  # noqa: E402

from xbml.datasets import fast_transforms as ft  # noqa: E402
from xbml.datasets.device_decode import EncodedBatch, batch_to_device, collate, encode, image_size_of  # noqa: E402
from xbml.errors import DataError  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jpegs")
    paths = []
    for k, (h, w) in enumerate(((60, 80), (70, 70), (50, 90))):
        paths.append(folder / f"{k}.jpg")
        Image.fromarray(photo(h, w, k)).save(paths[-1], quality=85)
    paths.append(folder / "3.png")  # not a JPEG: decoded by the worker, moved as pixels
    Image.fromarray(photo(40, 60, 3)).save(paths[-1])
    return paths


def test_a_batch_decoded_at_once_equals_the_cpu_items(files):
    cpu_device = torch.device("cpu")
    for train in (True, False):
        items, expected = [], []
        for seed, path in enumerate(files):
            aug = ft.draw_augmentation(seed, *image_size_of(path)) if train else None
            items.append((encode(path, aug, 32, 36), seed))
            image = ft.decode(path)
            expected.append(ft.augmented_crop(image, aug, 32) if train else ft.eval_view(image, 36, 32))
        batch, labels = collate(items)
        assert isinstance(batch, EncodedBatch) and labels.tolist() == [0, 1, 2, 3]
        out = batch_to_device(batch, cpu_device, channels_last=True)
        assert out.dtype == torch.uint8 and out.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(out, torch.stack(expected))


def test_a_corrupt_jpeg_in_a_batch_is_named(files, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(files[0].read_bytes()[:200] + b"\x00" * 50)
    batch = EncodedBatch([encode(files[0], None, 32, 36), encode(broken, None, 32, 36)])
    with pytest.raises(DataError, match=f"corrupt image file {broken}"):
        batch.decode(torch.device("cpu"))


def test_uint8_items_stack_into_channels_last_memory():
    items = [(torch.randint(0, 256, (3, 5, 4), dtype=torch.uint8), k) for k in range(3)]
    plain, _ = collate(items)
    last, _ = collate(items, channels_last=True)
    assert plain.is_contiguous() and last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain, last) and torch.equal(plain, torch.stack([x for x, _ in items]))


def test_training_with_device_decoding_takes_the_same_steps_as_with_the_workers_decoding(tmp_path):
    from test_torch_data import _prepared_cub

    from xbml.config import load_config
    from xbml.training.trainer import Trainer

    manifest = _prepared_cub(tmp_path / "cub")
    losses = {}
    for decode in ("cpu", "device"):
        cfg = load_config(None, [
            f"data.prepared={manifest.root}", "data.image_size=32", "data.resize=36", f"data.decode={decode}",
            "model.backbone=resnet18", "model.embedding_dim=8", "sampler.classes_per_batch=4",
            "sampler.images_per_class=2", "train.iterations=2", "train.progress=false", "train.device=cpu",
        ])
        Trainer(cfg, tmp_path / decode).fit()
        losses[decode] = [line for line in (tmp_path / decode / "train_log.jsonl").read_text().splitlines()]
        assert len(losses[decode]) == 2
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if k != "time_s"} for x in lines]  # noqa: E731
    assert strip(losses["cpu"]) == strip(losses["device"])
