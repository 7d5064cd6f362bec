import pytest

from xbml.config import load_config, parse_override
from xbml.errors import ConfigError


def test_defaults_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("xml:\n  weight: 0.1\nsampler:\n  classes_per_batch: 8\n")
    cfg = load_config(f, ["xml.ridge_lambda=0.5", "loss.params={margin: 0.2}"])
    assert cfg["xml"]["weight"] == 0.1
    assert cfg["xml"]["ridge_lambda"] == 0.5
    assert cfg["xml"]["num_prototypes"] == 32  # untouched default
    assert cfg["sampler"]["classes_per_batch"] == 8
    assert cfg["loss"]["params"] == {"margin": 0.2}


def test_base_inheritance(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 3\nxml:\n  weight: 0.2\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nxml:\n  ridge_lambda: 0.1\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg["seed"], cfg["xml"]["weight"], cfg["xml"]["ridge_lambda"]) == (3, 0.2, 0.1)


@pytest.mark.parametrize(
    "override,match",
    [
        ("xml.lamda=0.1", "unknown config key 'xml.lamda'"),
        ("optimiser.lr=0.1", "unknown config key 'optimiser'"),
        ("xml.weight=high", "'xml.weight' must be of type float"),
        ("xml.weight=1.5", "xml.weight must be in"),
        ("sampler.classes_per_batch=7", "even"),
        ("xml.target=pixels", "xml.target"),
        ("train.iterations=true", "'train.iterations' must be of type int"),
    ],
)
def test_bad_config_is_rejected_by_name(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_override_syntax():
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("xml.weight")
