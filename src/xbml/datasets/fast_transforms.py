"""The protocol's image transforms on uint8 tensors, with no float work: the device normalises.

Training: RandomResizedCrop(scale (0.16, 1), ratio (3/4, 4/3)) + horizontal flip. The crop box
and the flip are drawn by `draw_augmentation` with torchvision's algorithm from a generator of
the image's own seed, in the same order as torchvision's `Compose([RandomResizedCrop,
RandomHorizontalFlip])` draws from the global RNG after `torch.manual_seed(seed)`: a seed gives
the same box and flip as the reference pipeline, in a worker or in the main process.

Evaluation: resize of the short side to `resize` (antialiased bilinear) and a centre crop.

The box is drawn in the coordinates of the original image; `scale_box` maps it onto a resized
copy (the prepared store), so that an image's augmentation is the same region whichever copy
is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from xbml.errors import DataError

SCALE = (0.16, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
# torchvision keeps log(ratio) as a float32 tensor; the same bounds give the same draws
_LOG_RATIO = torch.log(torch.tensor(RATIO))


@dataclass(frozen=True)
class Augmentation:
    top: int
    left: int
    height: int
    width: int
    flip: bool


def _crop_box(g: torch.Generator, height: int, width: int) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.make_params, drawing from `g`."""
    area = height * width
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(SCALE[0], SCALE[1], generator=g).item()
        aspect = torch.exp(torch.empty(1).uniform_(_LOG_RATIO[0], _LOG_RATIO[1], generator=g)).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,), generator=g).item())
            j = int(torch.randint(0, width - w + 1, size=(1,), generator=g).item())
            return i, j, h, w
    in_ratio = float(width) / float(height)  # fallback: torchvision's central crop
    if in_ratio < min(RATIO):
        w, h = width, int(round(width / min(RATIO)))
    elif in_ratio > max(RATIO):
        h, w = height, int(round(height * max(RATIO)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def draw_augmentation(seed: int, height: int, width: int) -> Augmentation:
    """The crop box (in an image of `height` x `width`) and flip of the image with this seed."""
    g = torch.Generator().manual_seed(int(seed))
    box = _crop_box(g, height, width)
    flip = bool(torch.rand(1, generator=g).item() < 0.5)  # RandomHorizontalFlip(p=0.5)
    return Augmentation(*box, flip)


def scale_box(aug: Augmentation, original: tuple[int, int], stored: tuple[int, int]) -> Augmentation:
    """The same region in a resized copy of the image (nearest whole pixels, at least one)."""
    sy, sx = stored[0] / original[0], stored[1] / original[1]
    top, left = round(aug.top * sy), round(aug.left * sx)
    bottom = min(stored[0], max(top + 1, round((aug.top + aug.height) * sy)))
    right = min(stored[1], max(left + 1, round((aug.left + aug.width) * sx)))
    return Augmentation(top, left, bottom - top, right - left, aug.flip)


def augmented_crop(image: torch.Tensor, aug: Augmentation, size: int) -> torch.Tensor:
    """uint8 (3, size, size): the box of a uint8 (3, H, W) image, resized (antialiased), maybe flipped.

    The box is copied into channels_last memory first: torch's uint8 antialiased bilinear kernel
    is fastest there (0.48 vs 0.77 ms for a CUB-sized image's crop), with the same bits as
    torchvision's `resized_crop`."""
    box = image[None, :, aug.top : aug.top + aug.height, aug.left : aug.left + aug.width]
    box = box.contiguous(memory_format=torch.channels_last)
    out = torch.nn.functional.interpolate(box, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return out.flip(-1) if aug.flip else out


def resize_short_side(image: torch.Tensor, resize: int) -> torch.Tensor:
    """The evaluation resize: torchvision's `Resize(resize, antialias=True)` on the uint8 tensor,
    the same sizes and the same call of torch's kernel, without importing torchvision (whose
    package import costs a job about 4 CPU-s; tests/datasets/test_fast_transforms.py compares)."""
    channels, height, width = image.shape[-3:]
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = resize, int(resize * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_h, new_w) == (height, width):
        return image
    batch = image.reshape(-1, channels, height, width)
    out = torch.nn.functional.interpolate(batch, size=[new_h, new_w], mode="bilinear", align_corners=False,
                                          antialias=True)
    return out.reshape(*image.shape[:-3], channels, new_h, new_w)


def centre_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision's `CenterCrop(size)`: zero padding where the image is smaller, then the crop
    whose corner is rounded from the centre."""
    height, width = image.shape[-2:]
    if size > height or size > width:
        pad_w, pad_h = max(size - width, 0), max(size - height, 0)
        image = torch.nn.functional.pad(image, [pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2], value=0.0)
        height, width = image.shape[-2:]
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image[..., top : top + size, left : left + size]


def eval_view(image: torch.Tensor, resize: int, size: int) -> torch.Tensor:
    return centre_crop(resize_short_side(image, resize), size)


# -- decoding ------------------------------------------------------------------------------------
def decode_pil(path: Path) -> torch.Tensor:
    """uint8 (3, H, W) through PIL, as the reference pipeline reads an image."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"image file missing: {path}; re-run `xbml fetch` for this dataset") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"corrupt image file {path}: {exc}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def read_bytes(path: Path) -> torch.Tensor:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"image file missing: {path}; re-run `xbml fetch` for this dataset") from None
    except OSError as exc:
        raise DataError(f"cannot read image file {path}: {exc}") from None
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def is_plain_jpeg(data: torch.Tensor) -> bool:
    """A JPEG libjpeg-turbo decodes to the pixels PIL gives (not CMYK/YCCK, which PIL converts
    its own way): start-of-image marker and an Adobe APP14 marker absent from the header."""
    head = data[:4096].numpy().tobytes()
    return head[:2] == b"\xff\xd8" and b"Adobe" not in head


def decode(path: Path) -> torch.Tensor:
    """uint8 (3, H, W): torchvision's libjpeg-turbo decoder for plain JPEGs (faster than PIL and
    the same pixels), PIL for everything else."""
    from torchvision.io import ImageReadMode, decode_jpeg

    data = read_bytes(path)
    if is_plain_jpeg(data):
        try:
            return decode_jpeg(data, mode=ImageReadMode.RGB)
        except RuntimeError:
            pass  # PIL decides whether the file is corrupt, with the reference error message
    return decode_pil(path)
