"""The backbones a config may name (`model.backbone`), each declared by where it lives and
imported on first use: config validation reads the names without importing torch."""

from __future__ import annotations

from xbml.registry import Registry

BACKBONES: Registry = Registry("backbone")

for _name, _cls in (
    ("glyph_convnet", "GlyphConvNet"),
    ("glyph_convnet_avgpool", "GlyphConvNetAvgPool"),
    ("glyph_convnet_slim", "GlyphConvNetSlim"),
    ("glyph_convnet_strided", "GlyphConvNetStrided"),
    ("resnet18", "ResNet18"),
    ("resnet50", "ResNet50"),
    ("bn_inception", "BNInception"),
):
    BACKBONES.declare(_name, f"xbml.models.backbones:{_cls}")
