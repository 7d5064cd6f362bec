"""The reference pipeline of the real images, as xbml ran it up to version 0.x of the loader:
PIL decode, torchvision v2 transforms on the uint8 tensor, then float conversion and ImageNet
normalisation on the CPU, all per image. Kept as the yardstick: the fast uint8 path
(`fast_transforms` + the device's `DeviceNormalisation`) is tested and benchmarked against it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xbml.models.input_normalisation import IMAGENET_RGB

SCALE = (0.16, 1.0)


def reference_pipeline(train: bool, image_size: int, resize: int):
    from torchvision.transforms import v2 as T

    if train:
        ops = [T.RandomResizedCrop(image_size, scale=SCALE, antialias=True), T.RandomHorizontalFlip()]
    else:
        ops = [T.Resize(resize, antialias=True), T.CenterCrop(image_size)]
    return T.Compose(
        [T.PILToTensor(), *ops, T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_RGB.mean, IMAGENET_RGB.std)]
    )


def reference_item(path: Path, image_size: int, resize: int, seed: int | None) -> torch.Tensor:
    """float32 (3, size, size), ImageNet-normalised: a training item when `seed` is given."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
    pipeline = reference_pipeline(seed is not None, image_size, resize)
    if seed is None:
        return pipeline(im)
    # torchvision draws from the global RNG: fork it so a seed decides this image alone
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return pipeline(im)
