"""Backbones return a feature map (b, d, h, w); pooling and the head come after.

Pretrained ImageNet weights are only ever read from disk (an explicit file, or
torchvision's cache folder): nothing is downloaded, and asking for weights that
are not there is an error that names the path to put them at.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from xbml.errors import ConfigError
from xbml.models.input_normalisation import CAFFE_BGR, HALF_RANGE, IMAGENET_RGB, InputConvention
from xbml.models.backbone_registry import BACKBONES  # the names; the classes are below


class Backbone(nn.Module):
    """Thin base: subclasses set `out_channels` and map images to a feature map."""

    out_channels: int
    in_channels: int = 3
    # what a uint8 batch is turned into on the device (xbml.models.input_normalisation)
    input_convention: InputConvention = IMAGENET_RGB


def _conv_block(cin: int, cout: int, pool: type[nn.Module] | None) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    if pool is not None:
        layers.append(pool(2))
    return nn.Sequential(*layers)


def _strided_block(cin: int, cout: int) -> nn.Sequential:
    """A 4x4 stride-2 convolution, batch norm and ReLU. A 3x3 convolution followed by a 2x2 average
    pool is one such convolution (a constrained 4x4 kernel; tests/models/test_backbones.py), so
    this is the pooled block with its pool moved ahead of batch norm and ReLU, which then run at a
    quarter of the positions, and with a free 4x4 kernel."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class GlyphConvNet(Backbone):
    """4 conv blocks (32-64-128-128), three of them halving the size: a 3x3x128 map of the 24x24
    glyphs (4x4 at 32x32, as in facts.md)."""

    pool: type[nn.Module] = nn.MaxPool2d
    widths: tuple[int, int, int, int] = (32, 64, 128, 128)
    strided_blocks: int = 0  # how many of the pooled blocks are 4x4 stride-2 convolutions instead
    input_convention = HALF_RANGE

    def __init__(self, in_channels: int = 1, pretrained: bool = False, weights_path: str | None = None):
        super().__init__()
        if pretrained:
            raise ConfigError("glyph_convnet has no pretrained weights; set model.pretrained: false")
        self.in_channels = in_channels
        self.out_channels = self.widths[-1]
        ins = (in_channels, *self.widths[:-1])
        self.features = nn.Sequential(*(
            _strided_block(cin, cout) if i < self.strided_blocks else _conv_block(cin, cout, self.pool if i < 3 else None)
            for i, (cin, cout) in enumerate(zip(ins, self.widths))
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class GlyphConvNetAvgPool(GlyphConvNet):
    """The glyph net with 2x2 average-pool downsampling. Alone it makes a CPU step 0.93x as long as
    max-pool's (whose backward keeps indices); with channels_last both nets cost the same (0.68x);
    on the glyph default its validation MAP@R was as good or better (benchmarks/bench_glyph_step.py,
    README)."""

    pool = nn.AvgPool2d


class GlyphConvNetSlim(GlyphConvNetAvgPool):
    """The average-pool glyph net with narrower inner blocks (24-48-96-128): 0.69x the
    multiply-adds, the same 128-channel map for the head and XML."""

    widths = (24, 48, 96, 128)


class GlyphConvNetStrided(GlyphConvNetSlim):
    """The slim glyph net whose first two blocks are 4x4 stride-2 convolutions (no pool): at 24x24
    the full-size batch norm and pool of the first block cost more CPU than any other block for the
    fewest multiply-adds. A step takes 0.71x the slim net's (benchmarks/bench_glyph_step.py); the
    glyph default's validation MAP@R was as high at 4,050 iterations (README, "How the default was
    sized", which also gives one and three strided blocks)."""

    strided_blocks = 2


def torchvision_cache_path(weights) -> Path:
    """Where torchvision would keep `weights` after a download: torch.hub's checkpoint folder."""
    filename = os.path.basename(weights.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_pretrained_state(weights, weights_path: str | None) -> dict:
    path = Path(weights_path) if weights_path else torchvision_cache_path(weights)
    if not path.exists():
        raise ConfigError(
            f"pretrained weights requested but {path} does not exist. Download {weights.url} "
            f"on a machine with internet and place it at {path} (or set model.weights_path), "
            "or set model.pretrained: false"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ConfigError(f"cannot read pretrained weights {path}: {exc}; re-download {weights.url}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


class TorchvisionResNet(Backbone):
    arch: str
    weights_enum: str

    def __init__(self, in_channels: int = 3, pretrained: bool = False, weights_path: str | None = None):
        super().__init__()
        import torchvision

        self.in_channels = in_channels
        net = getattr(torchvision.models, self.arch)(weights=None)
        if pretrained:
            weights = getattr(torchvision.models, self.weights_enum).IMAGENET1K_V1
            missing, unexpected = net.load_state_dict(load_pretrained_state(weights, weights_path), strict=False)
            if missing or [k for k in unexpected if not k.startswith("fc.")]:
                raise ConfigError(
                    f"weights for {self.arch} do not match the architecture "
                    f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
                )
        self.out_channels = net.fc.in_features
        # everything up to the last residual stage: pooling belongs to the embedding model
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1 and self.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        return self.stages(self.stem(x))


class ResNet18(TorchvisionResNet):
    arch = "resnet18"
    weights_enum = "ResNet18_Weights"


class ResNet50(TorchvisionResNet):
    arch = "resnet50"
    weights_enum = "ResNet50_Weights"


def build_backbone(name: str, in_channels: int, pretrained: bool = False, weights_path: str | None = None) -> Backbone:
    cls = BACKBONES.get(name)
    if not name.startswith("glyph_convnet"):
        in_channels = 3  # torchvision nets take RGB; grey images are expanded in forward
    return cls(in_channels=in_channels, pretrained=pretrained, weights_path=weights_path)


class BNInception(Backbone):
    """BN-Inception with the Caffe-ported ImageNet weights DML work uses (xbml.models.bn_inception):
    a 1024-channel 7x7 map of a 224 crop; its input is BGR 0-255 minus the mean, on the device."""

    input_convention = CAFFE_BGR

    def __init__(self, in_channels: int = 3, pretrained: bool = False, weights_path: str | None = None):
        super().__init__()
        from xbml.models.bn_inception import BNInceptionFeatures, load_bn_inception_state, load_into

        self.in_channels = in_channels
        self.features = BNInceptionFeatures()
        self.out_channels = self.features.out_channels
        if pretrained:
            load_into(self.features, load_bn_inception_state(weights_path))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
