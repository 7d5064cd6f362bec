import subprocess

import pytest
import yaml

from conftest import ROOT
from xbml.errors import ConfigError
from xbml.workflow.plan import expand_runs, load_workflow_config, validate_config


def _config(**extra):
    cfg = {
        "datasets": {"glyphs": {"train_config": str(ROOT / "config/train/glyphs.yaml")}},
        "methods": {"baseline": {}, "xml": {"xml.weight": 0.1}},
        "seeds": [0, 1],
    }
    cfg.update(extra)
    return validate_config(cfg)


def test_default_config_expands_to_baseline_and_an_xml_sweep_over_three_seeds():
    runs = expand_runs(load_workflow_config(ROOT / "config/config.yaml"))
    assert sorted({r.name for r in runs}) == ["baseline", "xml@xml.weight=0.1", "xml@xml.weight=0.3"]
    assert sorted({r.seed for r in runs}) == [0, 1, 2]
    assert len(runs) == 9
    xml = next(r for r in runs if r.name == "xml@xml.weight=0.1")
    assert "xml.weight=0.1" in xml.overrides and xml.method == "xml"


def test_defaults_are_filled_from_the_schema():
    cfg = _config()
    assert cfg["baseline"] == "baseline"
    assert cfg["datasets"]["glyphs"]["val_fraction"] == 0.2
    assert cfg["dvc"]["remote"] == "local"


def test_sweeps_expand_into_one_run_per_value_and_seed():
    cfg = _config(methods={"baseline": {}, "xml_w": {"xml.weight": [0.05, 0.2], "xml.target": "embedding"}})
    runs = [r for r in expand_runs(cfg) if r.method == "xml_w"]
    assert sorted({r.name for r in runs}) == ["xml_w@xml.weight=0.05", "xml_w@xml.weight=0.2"]
    assert len(runs) == 4
    assert all("xml.target=embedding" in r.overrides for r in runs)
    assert {dict(r.swept)["xml.weight"] for r in runs} == {0.05, 0.2}


@pytest.mark.parametrize(
    "change,match",
    [
        ({"sedes": [0]}, "Additional properties are not allowed \\('sedes'"),
        ({"seeds": "0"}, "key seeds: '0' is not of type 'array'"),
        ({"methods": {"baseline": {}, "xml": {"xml.lamda": 0.1}}}, "method 'xml' .*unknown config key 'xml.lamda'"),
        ({"methods": {"baseline": {}, "xml": {"xml.weight": "heavy"}}}, "'xml.weight' must be of type float"),
        ({"datasets": {"mnist": {"train_config": "config/train/glyphs.yaml"}}}, "unknown dataset\\(s\\) \\['mnist'\\]"),
        ({"baseline": "vanilla"}, "'vanilla' is not one of the methods"),
    ],
)
def test_bad_configs_are_refused_with_the_key(change, match):
    cfg = {
        "datasets": {"glyphs": {"train_config": str(ROOT / "config/train/glyphs.yaml")}},
        "methods": {"baseline": {}, "xml": {"xml.weight": 0.1}},
        "seeds": [0],
        **change,
    }
    with pytest.raises(ConfigError, match=match):
        expand_runs(validate_config(cfg))


def test_committed_dvc_yaml_matches_the_default_config():
    r = subprocess.run(
        ["python", "-m", "xbml", "dvc-pipeline", "--config", "config/config.yaml", "--check"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_dvc_yaml_has_the_snakemake_commands():
    """Both front doors run the same commands: compare dvc.yaml's with Snakemake's dry-run shell commands."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    dry = subprocess.run(
        ["snakemake", "-n", "-p", "--cores", "8", "all", "--forceall"],
        cwd=ROOT, capture_output=True, text=True, env={**__import__("os").environ, "XDG_CACHE_HOME": "/tmp/xbml-xdg"},
    )
    assert dry.returncode == 0, dry.stderr
    shell = dry.stdout + dry.stderr
    for name in ("fetch_glyphs", "prepare_glyphs", "train_glyphs_xml-xml-weight-0-1_seed1", "evaluate_glyphs_baseline_seed2_test"):
        assert dvc[name]["cmd"] in shell, name


def test_real_data_config_is_valid_and_asks_for_gpus():
    cfg = load_workflow_config(ROOT / "config/real.yaml")
    runs = expand_runs(cfg)
    assert {r.dataset for r in runs} == {"cub200", "cars196", "sop", "inshop"}
    assert cfg["resources"]["train"]["gpus"] == 1
    from xbml.config import load_config

    train = load_config(ROOT / "config/train/real_images.yaml")
    assert (train["model"]["backbone"], train["data"]["image_size"]) == ("resnet50", 224)
    assert (train["sampler"]["classes_per_batch"], train["sampler"]["images_per_class"]) == (8, 4)


def test_configfile_replaces_the_default_config_instead_of_merging(tmp_path):
    import os

    from conftest import copy_repository

    repo = copy_repository(tmp_path / "repo")
    dry = subprocess.run(
        ["snakemake", "-n", "all", "--configfile", "config/real.yaml"],
        cwd=repo, capture_output=True, text=True, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")},
    )
    assert dry.returncode == 0, dry.stderr
    targets = next(line for line in dry.stdout.splitlines() if line.strip().startswith("input: reports/"))
    assert "reports/cub200/index.html" in targets and "glyphs" not in targets
