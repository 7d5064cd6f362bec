"""The one step that turns a uint8 image batch into what a backbone's weights expect, on the device.

Images travel as uint8 (a quarter of float32's bytes) and are converted where the model runs;
each backbone names its input convention, so BN-Inception's BGR 0-255 mean subtraction,
ResNet's RGB [0, 1] mean/std and the glyph nets' [-1, 1] are the same step with other numbers,
never a transform. The constants are non-persistent buffers: model files keep the keys they had.
A float batch passes through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class InputConvention:
    name: str
    bgr: bool  # channel order the weights were trained with
    scale: float  # uint8 values are divided by this (255: [0, 1]; 1: [0, 255])
    mean: tuple[float, ...]  # in the weights' channel order and range
    std: tuple[float, ...]
    # x / scale (the glyph datasets' order since the first round) rather than x * (1 / scale)
    # (torchvision's ToDtype): 111 of the 256 uint8 values differ in the last bit between the two
    divide: bool = False


# torchvision's ImageNet weights (and the reference transform's ToDtype(scale=True) + Normalize)
IMAGENET_RGB = InputConvention("imagenet_rgb", False, 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# Caffe-trained weights ported by Cadene's pretrainedmodels (BN-Inception): BGR, 0-255, mean only
CAFFE_BGR = InputConvention("caffe_bgr", True, 1.0, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0))
# the glyph nets: [0, 1] then (x - 0.5) / 0.5, any number of channels
HALF_RANGE = InputConvention("half_range", False, 255.0, (0.5,), (0.5,), divide=True)


class DeviceNormalisation(nn.Module):
    def __init__(self, convention: InputConvention):
        super().__init__()
        self.convention = convention
        # float32 values of the constants, as torchvision's Normalize builds them
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(convention.mean, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(convention.std, dtype=torch.float32).view(shape), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            return images
        c = self.convention
        if images.shape[1] == 1 and len(c.mean) > 1:  # grey images for RGB weights: the grey value in every channel
            images = images.expand(-1, len(c.mean), -1, -1)
        if c.bgr:
            images = images.flip(1)
        # the reference's operations in its order (to float, * 1/max or / max, - mean, / std): the same bits
        x = images.to(torch.float32)
        if c.scale != 1.0:
            x = x.div_(c.scale) if c.divide else x.mul_(1.0 / c.scale)
        return x.sub_(self.mean).div_(self.std)
