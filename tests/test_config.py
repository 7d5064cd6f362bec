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
        ("xml.weight=1.5", r"'xml.weight' is 1.5; it must be a finite number in \[0, 1\]"),
        ("sampler.classes_per_batch=7", "even"),
        ("xml.target=pixels", "'xml.target' is 'pixels'; valid values: class_proxy, embedding"),
        ("xml.features=raw", "'xml.features' is 'raw'; valid values: projected, backbone"),
        ("train.iterations=true", "'train.iterations' must be of type int"),
        ("optim.lr=-0.001", r"'optim.lr' is -0.001; it must be a finite number in \(0, inf\)"),
        ("optim.lr=.nan", "'optim.lr' is nan"),
        ("optim.lr=.inf", "'optim.lr' is inf"),
        ("optim.weight_decay=-1e-4", "'optim.weight_decay' is -0.0001"),
        ("xml.lr_multiplier=-1", "'xml.lr_multiplier' is -1"),
        ("optim.xml_lr_multiplier=2", "'optim.xml_lr_multiplier' is now 'xml.lr_multiplier'; rename it"),
        ("xbm.weight=2", "'xbm.weight' is 2"),
        ("optim.clip_grad_norm=-10", "'optim.clip_grad_norm' is -10"),
        ("seed=-1", "'seed' is -1"),
        ("data.max_classes=-1", "'data.max_classes' is -1"),
        ("eval.batch_size=0", "'eval.batch_size' is 0"),
        ("model.embedding_dim=0", "'model.embedding_dim' is 0"),
        ("loss.name=multi_similarty", "'loss.name' is 'multi_similarty'; valid values: .*multi_similarity"),
        ("loss.miner=semihard", "'loss.miner' is 'semihard'; valid values: null, none, auto, .*triplet_semihard"),
        ("model.backbone=resnet51", "'model.backbone' is 'resnet51'; valid values: .*resnet50"),
        ("optim.name=adamm", "'optim.name' is 'adamm'; valid values: adam, adamw, rmsprop, sgd"),
        ("optim.schedule=cosin", "'optim.schedule' is 'cosin'; valid values: constant, cosine"),
        ("train.amp=1", "'train.amp' is 1; valid values: auto, true, false"),
        ("optim.warmup_iterations=2000", "'optim.warmup_iterations' is 2000 but training has only 1000"),
        ("optim.final_lr_fraction=1.5", "'optim.final_lr_fraction' is 1.5"),
        ("optim.schedule=exponential", "'optim.final_lr_fraction' is 0, which an exponential schedule never reaches"),
    ],
)
def test_bad_config_is_rejected_by_name(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_override_syntax():
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("xml.weight")


@pytest.mark.parametrize("args", [["--seed", "-1"], ["--set", "optim.lr=-1"], ["--set", "loss.name=arcface2"]])
def test_the_train_command_refuses_a_bad_value_before_writing_anything(tmp_path, args):
    import subprocess

    from conftest import PYTHON, ROOT

    out = tmp_path / "run"
    proc = subprocess.run([PYTHON, "-m", "xbml", "train", "--out", str(out), *args], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "xbml train: error: config key" in proc.stderr
    assert not out.exists()
