"""The device-side normalisation step: the reference's values bit for bit, per backbone, memory
format kept, float batches passed through, model files unchanged."""

from __future__ import annotations

import torch
from torchvision.transforms import v2 as T

from xbml.models import build_model
from xbml.models.input_normalisation import CAFFE_BGR, HALF_RANGE, IMAGENET_RGB, DeviceNormalisation


def _batch(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (4, 3, 9, 7), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_imagenet_convention_equals_torchvisions_todtype_and_normalize_bit_for_bit():
    images = _batch()
    reference = T.Compose([T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_RGB.mean, IMAGENET_RGB.std)])
    ours = DeviceNormalisation(IMAGENET_RGB)(images)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, torch.stack([reference(x) for x in images]))


def test_hand_computed_values_of_both_conventions():
    pixel = torch.tensor([255, 0, 51], dtype=torch.uint8).view(1, 3, 1, 1)  # R, G, B
    rgb = DeviceNormalisation(IMAGENET_RGB)(pixel).flatten().tolist()
    expected = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    assert all(abs(a - b) < 1e-6 for a, b in zip(rgb, expected))
    bgr = DeviceNormalisation(CAFFE_BGR)(pixel).flatten().tolist()
    assert bgr == [51.0 - 104.0, 0.0 - 117.0, 255.0 - 128.0]


def test_channels_last_is_kept_and_float_batches_pass_through():
    images = _batch().contiguous(memory_format=torch.channels_last)
    out = DeviceNormalisation(IMAGENET_RGB)(images)
    assert out.is_contiguous(memory_format=torch.channels_last)
    glyphs = torch.randn(2, 1, 8, 8)
    assert DeviceNormalisation(IMAGENET_RGB)(glyphs) is glyphs


def test_a_resnet_sees_the_same_input_from_uint8_as_from_the_old_float_batch():
    cfg = {"backbone": "resnet18", "pretrained": False, "weights_path": None, "embedding_dim": 8}
    torch.manual_seed(0)
    model = build_model(cfg, 3).eval()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    old = T.Normalize(IMAGENET_RGB.mean, IMAGENET_RGB.std)(T.ToDtype(torch.float32, scale=True)(images))
    with torch.no_grad():
        assert torch.equal(model(images).embedding, model(old).embedding)
    # the constants are not part of the model file: files written before the step load strictly
    assert not [k for k in model.state_dict() if k.startswith("normalise")]


def test_the_glyph_convention_is_the_glyph_datasets_old_float_normalisation_bit_for_bit():
    """(x / 255 - 0.5) / 0.5, computed in that order: what the array store's items were before
    they travelled as uint8; x * (1/255) would differ in the last bit for 111 of the 256 values."""
    values = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    old = (values.to(torch.float32).div_(255.0) - 0.5) / 0.5
    assert torch.equal(DeviceNormalisation(HALF_RANGE)(values), old)
    assert torch.equal(DeviceNormalisation(HALF_RANGE)(values.expand(1, 3, 16, 16)), old.expand(1, 3, 16, 16))
    cfg = {"backbone": "glyph_convnet_slim", "pretrained": False, "weights_path": None, "embedding_dim": 8}
    assert build_model(cfg, 1).normalise.convention is HALF_RANGE


def test_a_grey_batch_meets_rgb_weights_as_its_grey_value_in_every_channel():
    grey = torch.randint(0, 256, (2, 1, 5, 5), dtype=torch.uint8)
    out = DeviceNormalisation(IMAGENET_RGB)(grey)
    assert out.shape == (2, 3, 5, 5)
    assert torch.equal(out, DeviceNormalisation(IMAGENET_RGB)(grey.repeat(1, 3, 1, 1)))
    cfg = {"backbone": "resnet18", "pretrained": False, "weights_path": None, "embedding_dim": 8}
    with torch.no_grad():
        assert build_model(cfg, 1).eval()(grey).embedding.shape == (2, 8)
