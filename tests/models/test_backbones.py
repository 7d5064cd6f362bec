"""The glyph backbones: the strided net's blocks are what its docstring says they are."""

import torch
import torch.nn.functional as F
from torch import nn

from xbml.models.backbones import BACKBONES, build_backbone


def test_a_4x4_stride_2_convolution_spans_a_3x3_convolution_followed_by_a_2x2_average_pool():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 24, 24, generator=g, dtype=torch.float64)
    w3 = torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64)
    pooled = F.avg_pool2d(F.conv2d(x, w3, padding=1), 2)
    # the 4x4 kernel: every 3x3 tap lands at each of the pool's four offsets, a quarter each
    w4 = torch.zeros(5, 3, 4, 4, dtype=torch.float64)
    for a in (0, 1):
        for b in (0, 1):
            w4[:, :, a : a + 3, b : b + 3] += w3 / 4
    strided = F.conv2d(x, w4, stride=2, padding=1)
    assert strided.shape == pooled.shape == (2, 5, 12, 12)
    torch.testing.assert_close(strided, pooled, rtol=0, atol=1e-12)


def test_the_strided_glyph_net_downsamples_by_convolution_and_keeps_the_slim_nets_map():
    strided = build_backbone("glyph_convnet_strided", 1)
    slim = build_backbone("glyph_convnet_slim", 1)
    x = torch.rand(4, 1, 24, 24)
    assert strided(x).shape == slim(x).shape == (4, 128, 3, 3)
    blocks = list(strided.features)
    for block in blocks[:2]:  # no pool: the convolution halves the size, batch norm runs after it
        conv = block[0]
        assert (conv.kernel_size, conv.stride, conv.padding) == ((4, 4), (2, 2), (1, 1))
        assert not any(isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)) for m in block)
    assert isinstance(blocks[2][-1], nn.AvgPool2d) and len(blocks[3]) == 3  # the rest as in the slim net
    assert [b[0].out_channels for b in blocks] == [24, 48, 96, 128]
    assert "glyph_convnet_strided" in BACKBONES.names()


def test_every_declared_backbone_is_a_backbone_class():
    from xbml.models.backbones import Backbone

    for name in BACKBONES.names():
        assert issubclass(BACKBONES.get(name), Backbone), name
