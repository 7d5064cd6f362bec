import math
import subprocess

import pytest
import yaml

from conftest import ROOT
from xbml.errors import ConfigError
from xbml.workflow.plan import RUN_NAME, expand_runs, load_workflow_config, run_name, validate_config, value_slug


def _config(**extra):
    cfg = {
        "datasets": {"glyphs": {"train_config": str(ROOT / "config/train/glyphs.yaml")}},
        "methods": {"baseline": {}, "xml": {"xml.weight": 0.1}},
        "seeds": [0, 1],
    }
    cfg.update(extra)
    return validate_config(cfg)


def test_every_run_of_the_default_config_has_a_safe_name_and_its_typed_overrides():
    cfg = load_workflow_config(ROOT / "config/config.yaml")
    runs = expand_runs(cfg)
    settings = sum(math.prod(len(v) for v in m.values() if isinstance(v, list)) for m in cfg["methods"].values())
    assert len(runs) == len({(r.name, r.seed) for r in runs}) == settings * len(cfg["seeds"])
    assert all(RUN_NAME.fullmatch(r.name) for r in runs)
    xml = next(r for r in runs if r.swept)
    key, value = xml.swept[0]
    assert xml.name == f"{xml.method}--{key}-{value}" and f"{key}={value}" in xml.overrides


def test_defaults_are_filled_from_the_schema():
    cfg = _config()
    assert cfg["baseline"] == "baseline"
    assert cfg["datasets"]["glyphs"]["val_fraction"] == 0.2
    assert cfg["dvc"]["remote"] == "local"


def test_sweeps_expand_into_one_run_per_value_and_seed():
    cfg = _config(methods={"baseline": {}, "xml_w": {"xml.weight": [0.05, 0.2], "xml.target": "embedding"}})
    runs = [r for r in expand_runs(cfg) if r.method == "xml_w"]
    assert sorted({r.name for r in runs}) == ["xml_w--xml.weight-0.05", "xml_w--xml.weight-0.2"]
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
        ({"methods": {"baseline": {}, "xml": {"xml.weight": []}}}, "methods.xml.xml.weight: an empty list"),
        ({"methods": {"baseline": {}, "xml": {"xml.weight": [0.1, 0.1]}}}, "repeats a value"),
        ({"methods": {"baseline": {}, "x$(id)": {}}}, "methods: 'x\\$\\(id\\)' does not match"),
        ({"methods": {"baseline": {}, "xml": {"loss.name": "multi_similarty"}}}, "'loss.name' is 'multi_similarty'"),
        ({"methods": {"baseline": {}, "xml": {"optim.schedule": "cosin"}}}, "'optim.schedule' is 'cosin'"),
        ({"eval_splits": []}, "eval_splits: \\[\\] should be non-empty"),
        ({"dvc": {"remote": "a;b"}}, "dvc.remote: 'a;b' does not match"),
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


def test_dvc_yaml_has_the_snakemake_commands(tmp_path):
    """Both front doors run the same commands: compare dvc.yaml's with Snakemake's dry-run shell commands."""
    from conftest import copy_repository

    repo = copy_repository(tmp_path / "repo")
    dvc = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    dry = subprocess.run(
        ["snakemake", "-n", "-p", "--cores", "8", "all", "--forceall"],
        cwd=repo, capture_output=True, text=True, env={**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")},
    )
    assert dry.returncode == 0, dry.stderr
    shell = dry.stdout + dry.stderr
    names = [n for n in dvc if n.split("_")[0] in ("fetch", "prepare", "train", "evaluate")]
    assert any(n.startswith("train_glyphs_xml--") for n in names)
    for name in names:
        assert dvc[name]["cmd"] in shell, name


def test_swept_values_become_safe_words_and_distinct_settings_distinct_names():
    assert value_slug(0.1) == "0.1" and value_slug("resnet50") == "resnet50"
    hostile = ["x$(touch INJECTED)", "a b", "it's", "{x}", {"alpha": 2.0}, {"alpha": 3.0}, "`id`", "a;b|c&d"]
    slugs = [value_slug(v) for v in hostile]
    assert all(RUN_NAME.fullmatch(run_name("m", (("k.x", v),))) for v in hostile)
    assert len(set(slugs)) == len(slugs)
    with pytest.raises(ConfigError, match="not a safe name"):
        run_name("9lives", ())


@pytest.mark.parametrize("value", ["x$(touch INJECTED)", "a b; touch INJECTED", "`touch INJECTED`", "x'\"{y}"])
def test_hostile_swept_values_reach_no_shell(tmp_path, value):
    """A swept path with shell syntax: the dry run prints the commands, quoted, and runs none of them."""
    import os

    from conftest import copy_repository

    repo = copy_repository(tmp_path / "repo")
    cfg = yaml.safe_load((repo / "config/config.yaml").read_text())
    cfg["methods"] = {"baseline": {}, "odd": {"model.weights_path": [value, "plain"],
                                             "loss.params": [{"alpha": 2.0}, {"alpha": 3.0}]}}
    cfg["seeds"] = [0]
    (repo / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    dry = subprocess.run(["snakemake", "-n", "-p", "--cores", "1", "all"], cwd=repo, capture_output=True, text=True,
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert dry.returncode == 0, dry.stderr
    assert not (repo / "INJECTED").exists()
    train_lines = [line for line in dry.stdout.splitlines() if " -m xbml train " in line]
    assert len(train_lines) == 5  # baseline + 2 x 2 sweep
    import shlex

    for line in train_lines:
        words = shlex.split(line.split(">")[0])  # the command as the shell would split it
        out = words[words.index("--out") + 1]
        assert RUN_NAME.fullmatch(out.split("/")[2]), out
    set_values = [yaml.safe_load(w.split("=", 1)[1]) for line in train_lines
                  for w in shlex.split(line.split(" > ")[0]) if w.startswith("model.weights_path=")]
    assert value in set_values  # the job would receive the value verbatim, as one word
    assert any("loss.params={alpha: 2.0}" in shlex.split(line.split(" > ")[0]) for line in train_lines)


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
