"""The uint8 transforms against torchvision's reference pipeline: the same boxes and flips for a
seed, the same pixels where the operation is deterministic, the same crop distribution."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import ks_2samp
from torchvision.transforms import v2 as T

from xbml.datasets import fast_transforms as ft
from xbml.datasets.reference_transforms import reference_item
from xbml.errors import DataError
from xbml.models.input_normalisation import IMAGENET_RGB, DeviceNormalisation

NORMALISE = DeviceNormalisation(IMAGENET_RGB)


def photo(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth gradients plus noise: compresses like a photo, unlike pure noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 200
    return np.clip(base + rng.normal(0, 15, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "bird.jpg"
    Image.fromarray(photo(90, 120, 0)).save(path, quality=90)
    return path


def test_boxes_and_flips_are_torchvisions_for_the_same_seed():
    rrc = T.RandomResizedCrop(224, scale=(0.16, 1.0), antialias=True)
    image = torch.zeros(3, 1, 1, dtype=torch.uint8)
    for height, width in ((375, 500), (480, 700), (600, 600), (20, 300)):  # the last often falls back
        image = torch.zeros(3, height, width, dtype=torch.uint8)
        for seed in range(150):
            torch.manual_seed(seed)
            box = rrc.make_params([image])
            flip = bool(torch.rand(1) < 0.5)  # RandomHorizontalFlip's draw, after the crop's
            aug = ft.draw_augmentation(seed, height, width)
            assert (aug.top, aug.left, aug.height, aug.width, aug.flip) == (
                box["top"], box["left"], box["height"], box["width"], flip
            ), (height, width, seed)


def test_training_and_evaluation_items_equal_the_reference_to_the_last_bit(jpeg):
    image = ft.decode(jpeg)
    for seed in range(40):
        fast = ft.augmented_crop(image, ft.draw_augmentation(seed, *image.shape[1:]), 64)
        assert fast.dtype == torch.uint8
        assert torch.equal(NORMALISE(fast[None])[0], reference_item(jpeg, 64, 72, seed)), seed
    assert torch.equal(NORMALISE(ft.eval_view(image, 72, 64)[None])[0], reference_item(jpeg, 64, 72, None))


def test_the_evaluation_resize_and_crop_are_torchvisions_without_importing_it():
    """Portrait, landscape, square, already at size, and smaller than the crop (zero padding)."""
    from torchvision.transforms.v2 import functional as F

    for i, (height, width, resize, size) in enumerate(
        ((90, 120, 72, 64), (120, 90, 72, 64), (75, 75, 72, 64), (72, 100, 72, 64), (301, 77, 40, 36),
         (50, 60, 50, 64), (31, 44, 31, 40))
    ):
        image = torch.from_numpy(photo(height, width, i)).permute(2, 0, 1).contiguous()
        ours, theirs = ft.resize_short_side(image, resize), F.resize(image, [resize], antialias=True)
        assert ours.shape == theirs.shape and torch.equal(ours, theirs), (height, width)
        cropped, reference = ft.centre_crop(ours, size), F.center_crop(theirs, [size, size])
        assert cropped.shape == reference.shape == (3, size, size) and torch.equal(cropped, reference), (height, width)
    code = ("import sys, torch\n"
            "from xbml.datasets import fast_transforms as ft\n"
            "ft.eval_view(torch.zeros(3, 90, 120, dtype=torch.uint8), 72, 64)\n"
            "assert 'torchvision' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_fast_decoder_gives_pils_pixels_and_other_formats_go_through_pil(tmp_path, jpeg):
    assert torch.equal(ft.decode(jpeg), ft.decode_pil(jpeg))
    grey = tmp_path / "grey.jpg"
    Image.fromarray(photo(30, 40, 1)[..., 0]).save(grey)
    assert torch.equal(ft.decode(grey), ft.decode_pil(grey))
    png = tmp_path / "image.png"
    Image.fromarray(photo(30, 40, 2)).save(png)
    assert ft.decode(png).shape == (3, 30, 40)
    assert torch.equal(ft.decode(png), torch.from_numpy(photo(30, 40, 2)).permute(2, 0, 1))
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(photo(30, 40, 3)).convert("CMYK").save(cmyk)
    assert torch.equal(ft.decode(cmyk), ft.decode_pil(cmyk))


def test_corrupt_and_missing_files_keep_their_messages(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(DataError, match=f"corrupt image file {broken}"):
        ft.decode(broken)
    with pytest.raises(DataError, match=f"image file missing: {tmp_path / 'absent.jpg'}"):
        ft.decode(tmp_path / "absent.jpg")


def _area_and_log_ratio(boxes, height, width):
    area = np.array([h * w / (height * width) for h, w in boxes])
    log_ratio = np.array([math.log(w / h) for h, w in boxes])
    return area, log_ratio


def test_crop_area_and_aspect_follow_torchvisions_distribution_from_the_store_too():
    """Two-sample KS tests (independent seeds) of the crop's area fraction and log aspect ratio:
    the boxes drawn for the original JPEG, and the same boxes mapped onto a copy resized to a
    short side of 256, against torchvision's RandomResizedCrop."""
    height, width, n = 375, 500, 2000
    rrc = T.RandomResizedCrop(224, scale=(0.16, 1.0))
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    torch.manual_seed(10**6)  # a stream independent of the per-image seeds below
    reference = [(b["height"], b["width"]) for b in (rrc.make_params([image]) for _ in range(n))]
    stored = (256, 341)
    ours, mapped = [], []
    for seed in range(n):
        aug = ft.draw_augmentation(seed, height, width)
        ours.append((aug.height, aug.width))
        small = ft.scale_box(aug, (height, width), stored)
        mapped.append((small.height, small.width))
    ref_area, ref_ratio = _area_and_log_ratio(reference, height, width)
    for boxes, (h, w) in ((ours, (height, width)), (mapped, stored)):
        area, ratio = _area_and_log_ratio(boxes, h, w)
        assert ks_2samp(area, ref_area).pvalue > 0.01
        assert ks_2samp(ratio, ref_ratio).pvalue > 0.01
    # and the tests can fail: a narrower scale range is told apart
    narrow = T.RandomResizedCrop(224, scale=(0.3, 1.0))
    other = [(b["height"], b["width"]) for b in (narrow.make_params([image]) for _ in range(n))]
    assert ks_2samp(_area_and_log_ratio(other, height, width)[0], ref_area).pvalue < 1e-6


def test_a_box_maps_onto_the_same_region_of_a_resized_copy():
    aug = ft.Augmentation(top=100, left=40, height=150, width=200, flip=True)
    small = ft.scale_box(aug, (375, 500), (256, 341))
    assert (small.top, small.left, small.height, small.width, small.flip) == (68, 27, 103, 137, True)
    tiny = ft.scale_box(ft.Augmentation(0, 0, 1, 1, False), (375, 500), (256, 341))
    assert (tiny.height, tiny.width) == (1, 1)  # never empty
