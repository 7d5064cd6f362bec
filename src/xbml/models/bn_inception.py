"""BN-Inception (Ioffe & Szegedy 2015), the backbone of MLRC and most published DML tables, in the
form of the ImageNet weights DML work loads: Cadene's `pretrainedmodels` port of the Caffe model.

The layers carry that port's names (``conv1_7x7_s2``, ``conv1_7x7_s2_bn``, ``inception_3a_1x1``,
..., ``inception_5b_pool_proj_bn``), so its state dict loads strictly; ``last_linear`` (the
ImageNet classifier) is left out, as ResNet's ``fc``. Every convolution is followed by its
BatchNorm and a ReLU (the port applies its ReLUs in place, so the concatenated branch outputs
are rectified too). The package itself (0.7.4, 2018) is not a dependency: it is unmaintained
and its module only defines this network.

Input convention (the port's settings: input_space BGR, input_range [0, 255], mean
[104, 117, 128], std [1, 1, 1]) is `CAFFE_BGR`, applied on the device by the model's
`DeviceNormalisation`, never in a transform.

Weights are read only from a local file whose sha256 starts with one of the published files'
hash prefixes (torch.hub's convention: the hex digits in the file name are the start of its
sha256). Two files are published under http://data.lip6.fr/cadene/pretrainedmodels/:
``bn_inception-52deb4733.pth`` (the one most DML code loads; its BatchNorm tensors are stored
as (1, C) and are squeezed, as that code does) and ``bn_inception-239d2248.pth`` (the URL of
the package's current release, re-ported with Python 2).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from xbml.errors import ConfigError
from xbml.models.input_normalisation import CAFFE_BGR

BASE_URL = "http://data.lip6.fr/cadene/pretrainedmodels/"
# published file name -> its sha256 prefix (torch.hub's convention)
WEIGHT_FILES = {"bn_inception-52deb4733.pth": "52deb4733", "bn_inception-239d2248.pth": "239d2248"}

# (name, input channels, 1x1, 3x3 reduce, 3x3, double 3x3 reduce, double 3x3, pool kind, pool proj);
# a 1x1 of 0 is a grid-reduction block (stride-2 3x3 convolutions, max-pool passed through)
BLOCKS = (
    ("3a", 192, 64, 64, 64, 64, 96, "avg", 32),
    ("3b", 256, 64, 64, 96, 64, 96, "avg", 64),
    ("3c", 320, 0, 128, 160, 64, 96, "max", 0),
    ("4a", 576, 224, 64, 96, 96, 128, "avg", 128),
    ("4b", 576, 192, 96, 128, 96, 128, "avg", 128),
    ("4c", 576, 160, 128, 160, 128, 160, "avg", 128),
    ("4d", 608, 96, 128, 192, 160, 192, "avg", 128),
    ("4e", 608, 0, 128, 192, 192, 256, "max", 0),
    ("5a", 1056, 352, 192, 320, 160, 224, "avg", 128),
    ("5b", 1024, 352, 192, 320, 192, 224, "max", 128),
)


def _bn(channels: int) -> nn.BatchNorm2d:
    # the port's momentum 0.9 (Caffe's moving-average convention copied verbatim); it only
    # matters when BatchNorm statistics are trained (model.freeze_bn: false)
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


class BNInceptionFeatures(nn.Module):
    """The convolutional part: (b, 3, 224, 224) -> (b, 1024, 7, 7)."""

    out_channels = 1024

    def __init__(self):
        super().__init__()
        self._conv("conv1_7x7_s2", 3, 64, 7, stride=2)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._conv("conv2_3x3_reduce", 64, 64, 1)
        self._conv("conv2_3x3", 64, 192, 3)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name, cin, c1, r3, c3, rd, cd, pool, proj in BLOCKS:
            p, stride = f"inception_{name}", 2 if c1 == 0 else 1
            if c1:
                self._conv(f"{p}_1x1", cin, c1, 1)
            self._conv(f"{p}_3x3_reduce", cin, r3, 1)
            self._conv(f"{p}_3x3", r3, c3, 3, stride=stride)
            self._conv(f"{p}_double_3x3_reduce", cin, rd, 1)
            self._conv(f"{p}_double_3x3_1", rd, cd, 3)
            self._conv(f"{p}_double_3x3_2", cd, cd, 3, stride=stride)
            if stride == 2:
                layer = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif pool == "max":
                layer = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
            else:
                layer = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
            setattr(self, f"{p}_pool", layer)
            if proj:
                self._conv(f"{p}_pool_proj", cin, proj, 1)

    def _conv(self, name: str, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        setattr(self, name, nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2))
        setattr(self, f"{name}_bn", _bn(cout))

    def _cbr(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(getattr(self, f"{name}_bn")(getattr(self, name)(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1_3x3_s2(self._cbr("conv1_7x7_s2", x))
        x = self.pool2_3x3_s2(self._cbr("conv2_3x3", self._cbr("conv2_3x3_reduce", x)))
        for name, _, c1, _, _, _, _, _, proj in BLOCKS:
            p = f"inception_{name}"
            branches = [self._cbr(f"{p}_1x1", x)] if c1 else []
            branches.append(self._cbr(f"{p}_3x3", self._cbr(f"{p}_3x3_reduce", x)))
            double = self._cbr(f"{p}_double_3x3_1", self._cbr(f"{p}_double_3x3_reduce", x))
            branches.append(self._cbr(f"{p}_double_3x3_2", double))
            pooled = getattr(self, f"{p}_pool")(x)
            branches.append(self._cbr(f"{p}_pool_proj", pooled) if proj else pooled)
            x = torch.cat(branches, 1)
        return x


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def default_weights_path() -> Path:
    """Where torch.hub would keep the file most DML code loads."""
    return Path(torch.hub.get_dir()) / "checkpoints" / "bn_inception-52deb4733.pth"


def load_bn_inception_state(weights_path: str | None) -> dict:
    """The published weights from a local file, checked against the published hash prefixes."""
    path = Path(weights_path) if weights_path else default_weights_path()
    names = " or ".join(BASE_URL + name for name in WEIGHT_FILES)
    if not path.is_file():
        raise ConfigError(
            f"pretrained weights requested but {path} does not exist. Download {names} on a machine with "
            f"internet and place it at {path} (or set model.weights_path), or set model.pretrained: false"
        )
    digest = _sha256(path)
    if not any(digest.startswith(prefix) for prefix in WEIGHT_FILES.values()):
        raise ConfigError(
            f"{path} is not a published BN-Inception weights file: its sha256 {digest[:12]}... starts with none "
            f"of {', '.join(WEIGHT_FILES.values())}; download {names} again"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ConfigError(f"cannot read pretrained weights {path}: {exc}; download {names} again") from None
    return squeeze_batchnorm(state)


def squeeze_batchnorm(state: dict) -> dict:
    """The older port (52deb4733) stores BatchNorm vectors as (1, C): as (C,), the way DML code loads it."""
    return {k: v.squeeze(0) if v.dim() == 2 and v.shape[0] == 1 and "_bn." in k else v for k, v in state.items()}


def load_into(features: BNInceptionFeatures, state: dict) -> None:
    kept = {k: v for k, v in state.items() if not k.startswith("last_linear.")}
    try:
        features.load_state_dict(kept, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"weights for bn_inception do not match the architecture: {first}") from None
