"""BN-Inception: the published weights' keys and shapes load strictly, the feature map, the
checksum check of the weights file, and its input convention applied on the device."""

from __future__ import annotations

import pytest
import torch

from xbml.errors import ConfigError
from xbml.models import build_model
from xbml.models.bn_inception import BNInceptionFeatures, load_bn_inception_state, load_into, squeeze_batchnorm

# Cadene pretrainedmodels' bninception.py, written out independently of xbml's block table:
# (layer, in, out, kernel) of every convolution; each has a BatchNorm `<layer>_bn` of `out`
STEM = [("conv1_7x7_s2", 3, 64, 7), ("conv2_3x3_reduce", 64, 64, 1), ("conv2_3x3", 64, 192, 3)]
INCEPTION = {  # block: in, 1x1, 3x3 reduce, 3x3, double reduce, double 3x3, pool proj
    "3a": (192, 64, 64, 64, 64, 96, 32), "3b": (256, 64, 64, 96, 64, 96, 64),
    "3c": (320, None, 128, 160, 64, 96, None), "4a": (576, 224, 64, 96, 96, 128, 128),
    "4b": (576, 192, 96, 128, 96, 128, 128), "4c": (576, 160, 128, 160, 128, 160, 128),
    "4d": (608, 96, 128, 192, 160, 192, 128), "4e": (608, None, 128, 192, 192, 256, None),
    "5a": (1056, 352, 192, 320, 160, 224, 128), "5b": (1024, 352, 192, 320, 192, 224, 128),
}


def published_shapes() -> dict[str, tuple[int, ...]]:
    convs = list(STEM)
    for b, (cin, c1, r3, c3, rd, cd, proj) in INCEPTION.items():
        p = f"inception_{b}"
        if c1:
            convs.append((f"{p}_1x1", cin, c1, 1))
        convs += [(f"{p}_3x3_reduce", cin, r3, 1), (f"{p}_3x3", r3, c3, 3), (f"{p}_double_3x3_reduce", cin, rd, 1),
                  (f"{p}_double_3x3_1", rd, cd, 3), (f"{p}_double_3x3_2", cd, cd, 3)]
        if proj:
            convs.append((f"{p}_pool_proj", cin, proj, 1))
    shapes = {}
    for name, cin, cout, k in convs:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, k, k), (cout,)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}_bn.{stat}"] = (cout,)
    shapes["last_linear.weight"], shapes["last_linear.bias"] = (1000, 1024), (1000,)
    return shapes


@pytest.fixture(scope="module")
def published_file(tmp_path_factory):
    """A file with the published weights' keys and shapes and random values."""
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=g) for k, shape in published_shapes().items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = state[k].abs() + 0.5
    path = tmp_path_factory.mktemp("weights") / "bn_inception-random.pth"
    torch.save(state, path)
    return path, state


def test_the_published_keys_and_shapes_load_strictly(published_file):
    path, state = published_file
    features = BNInceptionFeatures()
    load_into(features, torch.load(path, weights_only=True))  # strict, only last_linear left out
    ours = {k: v for k, v in features.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(ours) == set(state) - {"last_linear.weight", "last_linear.bias"}
    assert all(torch.equal(v, state[k]) for k, v in ours.items())


def test_a_missing_or_misshapen_tensor_is_refused(published_file):
    _, state = published_file
    broken = dict(state)
    del broken["inception_4c_3x3_bn.running_mean"]
    with pytest.raises(ConfigError, match="do not match the architecture"):
        load_into(BNInceptionFeatures(), broken)


def test_the_older_files_one_by_c_batchnorm_vectors_are_squeezed(published_file):
    _, state = published_file
    older = {k: (v.unsqueeze(0) if "_bn." in k else v) for k, v in state.items()}
    squeezed = squeeze_batchnorm(older)
    assert squeezed["conv1_7x7_s2_bn.running_mean"].shape == (64,)
    assert squeezed["conv1_7x7_s2.weight"].shape == (64, 3, 7, 7)  # convolutions untouched
    load_into(BNInceptionFeatures(), squeezed)


def test_forward_gives_a_1024_channel_7x7_map():
    torch.manual_seed(0)
    features = BNInceptionFeatures().eval()
    with torch.no_grad():
        assert features(torch.randn(2, 3, 224, 224)).shape == (2, 1024, 7, 7)
        assert features(torch.randn(1, 3, 160, 160)).shape == (1, 1024, 5, 5)  # ceil-mode pooling


def test_weights_are_only_read_from_a_file_with_a_published_checksum(published_file, tmp_path):
    path, _ = published_file
    with pytest.raises(ConfigError, match=r"not a published BN-Inception weights file: its sha256 .* 52deb4733"):
        load_bn_inception_state(str(path))
    with pytest.raises(ConfigError, match=r"does not exist. Download http://data.lip6.fr/cadene/pretrainedmodels/"):
        load_bn_inception_state(str(tmp_path / "absent.pth"))


def test_the_registered_backbone_normalises_bgr_0_255_on_the_device():
    model = build_model(
        {"backbone": "bn_inception", "pretrained": False, "weights_path": None, "embedding_dim": 128}, 3
    )
    assert model.feature_dim == 1024
    assert not [k for k in model.state_dict() if k.startswith("normalise")]  # model files keep their keys
    # RGB pixels (128, 117, 104) are the BGR mean; (255, 0, 10) -> BGR (10, 0, 255) - (104, 117, 128)
    pixels = torch.tensor([[128, 117, 104], [255, 0, 10]], dtype=torch.uint8).T.reshape(1, 3, 1, 2)
    out = model.normalise(pixels)
    assert out.dtype == torch.float32
    assert out[0, :, 0, 0].tolist() == [0.0, 0.0, 0.0]
    assert out[0, :, 0, 1].tolist() == [-94.0, -117.0, 127.0]
