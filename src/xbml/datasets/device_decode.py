"""Batches of real images: stacking uint8 items, and JPEG decoding of a whole batch on the device.

With `data.decode: device` a worker only reads a JPEG's bytes and draws its crop box (from the
header's size: the same box as decoding on the CPU), and the training process decodes the batch
with `torchvision.io.decode_jpeg(list, device=...)` (nvJPEG on CUDA) and crops and resizes each
image there. The steps are device-agnostic: on the CPU they give the CPU path's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from xbml.datasets import fast_transforms as ft
from xbml.errors import DataError


@dataclass
class EncodedImage:
    path: Path
    data: torch.Tensor | None  # JPEG bytes, or None when `pixels` holds the CPU-decoded image
    pixels: torch.Tensor | None
    aug: ft.Augmentation | None  # None: the evaluation view
    size: int
    resize: int


def image_size_of(path: Path) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
    except FileNotFoundError:
        raise DataError(f"image file missing: {path}; re-run `xbml fetch` for this dataset") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"corrupt image file {path}: {exc}") from None
    return height, width


def encode(path: Path, aug: ft.Augmentation | None, size: int, resize: int) -> EncodedImage:
    data = ft.read_bytes(path)
    if ft.is_plain_jpeg(data):
        return EncodedImage(path, data, None, aug, size, resize)
    return EncodedImage(path, None, ft.decode_pil(path), aug, size, resize)  # PNG, CMYK: the CPU path


def _view(image: torch.Tensor, item: EncodedImage) -> torch.Tensor:
    if item.aug is not None:
        return ft.augmented_crop(image, item.aug, item.size)
    return ft.eval_view(image, item.resize, item.size)


@dataclass
class EncodedBatch:
    items: list[EncodedImage]

    def decode(self, device: torch.device) -> torch.Tensor:
        """uint8 (B, 3, size, size) on `device`."""
        from torchvision.io import ImageReadMode, decode_jpeg

        jpegs = [k for k, it in enumerate(self.items) if it.data is not None]
        decoded: dict[int, torch.Tensor] = {}
        if jpegs:
            try:
                images = decode_jpeg([self.items[k].data for k in jpegs], mode=ImageReadMode.RGB, device=device)
            except RuntimeError:
                images = [self._decode_one(self.items[k], device) for k in jpegs]  # find the corrupt file
            decoded.update(zip(jpegs, images))
        for k, it in enumerate(self.items):
            if it.pixels is not None:
                decoded[k] = it.pixels.to(device)
        return torch.stack([_view(decoded[k], it) for k, it in enumerate(self.items)])

    @staticmethod
    def _decode_one(item: EncodedImage, device: torch.device) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            return decode_jpeg(item.data, mode=ImageReadMode.RGB, device=device)
        except RuntimeError as exc:
            raise DataError(f"corrupt image file {item.path}: {exc}") from None


def stack_images(images, channels_last: bool) -> torch.Tensor:
    """One uint8 (B, C, H, W) batch; with `channels_last` its memory is (B, H, W, C), what a
    channels_last model reads, so the device needs no layout change. In a DataLoader worker the
    batch is built in shared memory (no copy on its way to the main process)."""
    n, (c, h, w) = len(images), images[0].shape
    shared = torch.utils.data.get_worker_info() is not None
    if not channels_last:
        out = torch.empty((n, c, h, w), dtype=images[0].dtype)
        if shared:
            out.share_memory_()
        return torch.stack(images, out=out)
    out = torch.empty((n, h, w, c), dtype=images[0].dtype)
    if shared:
        out.share_memory_()
    for k, image in enumerate(images):
        out[k].copy_(image.permute(1, 2, 0))
    return out.permute(0, 3, 1, 2)


def collate(batch, channels_last: bool = False):
    """(images, labels) of a list of items: stacked tensors, or an EncodedBatch to decode on the device."""
    images, labels = zip(*batch)
    labels = torch.tensor(labels)
    if isinstance(images[0], EncodedImage):
        return EncodedBatch(list(images)), labels
    return stack_images(list(images), channels_last and images[0].dtype == torch.uint8), labels


def batch_to_device(images, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A loader's images on the device (decoded there when encoded), in the model's memory format."""
    if isinstance(images, EncodedBatch):
        images = images.decode(device)
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images
