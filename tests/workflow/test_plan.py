import math
import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from xbml.errors import ConfigError
from xbml.workflow.plan import (
    RUN_NAME,
    expand_runs,
    load_workflow_config,
    primary_comparisons,
    run_name,
    validate_config,
    value_slug,
)


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
    # the default spends its seeds on one declared question: XML at the authors' weight, no sweep
    xml = next(r for r in runs if r.method == "xml")
    assert not xml.swept and xml.name == "xml" and "xml.weight=0.1" in xml.overrides
    assert [str(p) for p in primary_comparisons(cfg)] == ["xml vs the baseline, map_at_r on test"]
    assert 2 / 2 ** len(cfg["seeds"]) < 0.05  # the exact test can reach a verdict


def test_a_config_must_declare_its_primary_comparison_unless_it_has_only_one():
    several = _config(methods={"baseline": {}, "xml": {"xml.weight": [0.1, 0.3]}})
    with pytest.raises(ConfigError, match=r"report.primary is missing and the config has 2 runs besides the "
                                          r"baseline \(xml--xml.weight-0.1, xml--xml.weight-0.3\)"):
        primary_comparisons(several)
    # naming the swept method would pick its setting on the same seeds' validation: refused
    swept = _config(methods={"baseline": {}, "xml": {"xml.weight": [0.1, 0.3]}}, report={"primary": {"run": "xml"}})
    with pytest.raises(ConfigError, match="is a swept method .* Name one run \\(e.g. xml--xml.weight-0.1\\)"):
        primary_comparisons(swept)
    named = _config(methods={"baseline": {}, "xml": {"xml.weight": [0.1, 0.3]}},
                    report={"primary": [{"run": "xml--xml.weight-0.3"}, {"run": "xml--xml.weight-0.1",
                                                                          "metric": "precision_at_1"}]})
    assert [(p.run, p.metric, p.split, p.declared) for p in primary_comparisons(named)] == [
        ("xml--xml.weight-0.3", "map_at_r", "test", True), ("xml--xml.weight-0.1", "precision_at_1", "test", True)]
    # one run besides the baseline: its test MAP@R, said to be a default
    (only,) = primary_comparisons(_config())
    assert (only.run, only.metric, only.split, only.declared) == ("xml", "map_at_r", "test", False)
    assert primary_comparisons(_config(methods={"baseline": {}})) == []
    for report, message in (
        ({"primary": {"run": "baseline"}}, "is the baseline"),
        ({"primary": {"run": "xbm"}}, "'xbm' is not a run of this config"),
        ({"primary": {"run": "xml", "metric": "recall_at_1"}}, "recall_at_1 equals precision_at_1"),
        ({"primary": {"run": "xml", "split": "test_separated"}}, "exists only under protocol mlrc_4fold"),
        ({"primary": [{"run": "xml"}, {"run": "xml"}]}, "declared twice"),
    ):
        with pytest.raises(ConfigError, match=message):
            primary_comparisons(_config(report=report))
    with pytest.raises(ConfigError, match="report.primary"):
        _config(report={"primary": {"run": "xml", "split": "val"}})  # the schema: test splits only


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


def _dry_run(repo, *args, tmp_path):
    import os

    dry = subprocess.run(["snakemake", "-n", "-p", *args], cwd=repo, capture_output=True, text=True,
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert dry.returncode == 0, dry.stderr
    return dry.stdout + dry.stderr


def test_dvc_yaml_is_one_stage_per_dataset_that_runs_snakemake_for_what_all_builds(tmp_path):
    """dvc.yaml holds no DAG of its own: per dataset it asks Snakemake for the `all` targets."""
    from conftest import copy_repository

    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert dvc["vars"] == ["config/config.yaml:datasets"] and list(dvc["stages"]) == ["workflow"]
    stage = dvc["stages"]["workflow"]
    assert stage["foreach"] == "${datasets}"
    body = stage["do"]
    words = body["cmd"].split()
    assert words[:3] == ["snakemake", "--cores", "all"]
    outs = [next(iter(o)) for o in body["outs"]]
    # every output persists (Snakemake's incremental state) and none is the `dvc add`ed raw folder
    assert all(next(iter(o.values()))["persist"] is True for o in body["outs"] + body["metrics"] + body["plots"])
    assert not [o for o in outs if o.startswith("data/raw")]
    assert all(next(iter(o.values()))["cache"] is False for o in body["metrics"] + body["plots"])

    repo = copy_repository(tmp_path / "repo")
    shell = _dry_run(repo, "--cores", "1", "all", tmp_path=tmp_path)
    inputs = next(line for line in shell.splitlines() if line.strip().startswith("input: reports/"))
    wanted = sorted(t.strip() for t in inputs.split(":", 1)[1].split(","))
    assert sorted(w.replace("${key}", "glyphs") for w in words[3:]) == wanted
    assert not (repo / "dvc.lock").exists() and (repo / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text()


def test_resources_live_in_profiles_only():
    cfg = load_workflow_config(ROOT / "config/config.yaml")
    assert "resources" not in cfg and "resources" not in yaml.safe_load((ROOT / "config/real.yaml").read_text())
    with pytest.raises(ConfigError, match="Additional properties are not allowed \\('resources'"):
        validate_config({**cfg, "resources": {"train": {"threads": 2}}})
    import xbml.workflow.plan as plan

    assert not hasattr(plan, "DEFAULT_RESOURCES")
    assert plan.launcher(0) == plan.launcher(1) == "python"
    assert plan.launcher(2).endswith("torch.distributed.run --standalone --nproc_per_node 2")


def test_gpu_profile_gives_training_the_gpu_and_several_gpus_torchrun(tmp_path):
    from conftest import copy_repository

    repo = copy_repository(tmp_path / "repo")
    gpu = yaml.safe_load((repo / "workflow/profiles/gpu/config.yaml").read_text())
    assert gpu["set-resources"]["train"]["gpu"] == gpu["set-resources"]["embed_evaluate"]["gpu"] == 1
    shell = _dry_run(repo, "all", "--configfile", "config/real.yaml", "--profile", "workflow/profiles/gpu",
                     "--set-resources", "train:gpu=2", "--resources", "gpu=2", "--cores", "8", tmp_path=tmp_path)
    lines = [line.removeprefix("Shell command: ") for line in shell.splitlines()]
    train = [line for line in lines if " -m xbml train " in line]
    assert train and all(line.startswith("python -m torch.distributed.run --standalone --nproc_per_node 2 -m xbml train")
                         for line in train), train[:2]
    assert all("--threads 8" in line for line in train)
    embed = [line for line in lines if " -m xbml embed-evaluate " in line]
    assert embed and all(line.startswith("python -m xbml embed-evaluate") and "--threads 8" in line for line in embed)


def test_swept_values_become_safe_words_and_distinct_settings_distinct_names():
    assert value_slug(0.1) == "0.1" and value_slug("resnet50") == "resnet50"
    hostile = ["x$(touch INJECTED)", "a b", "it's", "{x}", {"alpha": 2.0}, {"alpha": 3.0}, "`id`", "a;b|c&d"]
    slugs = [value_slug(v) for v in hostile]
    assert all(RUN_NAME.fullmatch(run_name("m", (("k.x", v),))) for v in hostile)
    assert len(set(slugs)) == len(slugs)
    with pytest.raises(ConfigError, match="not a safe name"):
        run_name("9lives", ())


HOSTILE_VALUES = ("x$(touch INJECTED)", "a b; touch INJECTED", "`touch INJECTED`", "x'\"{y}")


def test_hostile_swept_values_reach_no_shell(tmp_path):
    """Swept paths with shell syntax, all in one sweep: the dry run prints the commands, quoted, and
    runs none of them."""
    import os
    import shlex

    from conftest import copy_repository

    repo = copy_repository(tmp_path / "repo")
    cfg = yaml.safe_load((repo / "config/config.yaml").read_text())
    cfg["methods"] = {"baseline": {}, "odd": {"model.weights_path": [*HOSTILE_VALUES, "plain"],
                                             "loss.params": [{"alpha": 2.0}, {"alpha": 3.0}]}}
    cfg["seeds"] = [0]
    # yaml.safe_dump sorts the keys: loss.params is swept first
    cfg["report"]["primary"] = {"run": run_name("odd", (("loss.params", {"alpha": 2.0}), ("model.weights_path", "plain")))}
    (repo / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    dry = subprocess.run(["snakemake", "-n", "-p", "--cores", "1", "all"], cwd=repo, capture_output=True, text=True,
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert dry.returncode == 0, dry.stderr
    assert not (repo / "INJECTED").exists()
    train_lines = [line for line in dry.stdout.splitlines() if " -m xbml train " in line]
    assert len(train_lines) == 1 + 2 * (len(HOSTILE_VALUES) + 1)  # baseline + the sweep
    for line in train_lines:
        words = shlex.split(line.split(">")[0])  # the command as the shell would split it
        out = words[words.index("--out") + 1]
        assert RUN_NAME.fullmatch(out.split("/")[2]), out
    set_values = [yaml.safe_load(w.split("=", 1)[1]) for line in train_lines
                  for w in shlex.split(line.split(" > ")[0]) if w.startswith("model.weights_path=")]
    for value in HOSTILE_VALUES:  # each job would receive its value verbatim, as one word
        assert set_values.count(value) == 2, (value, set_values)
    assert any("loss.params={alpha: 2.0}" in shlex.split(line.split(" > ")[0]) for line in train_lines)
    # the labels of run.json arrive as flags, one word each
    odd = [shlex.split(line.split(" > ")[0]) for line in train_lines if "--method odd" in line]
    assert len(odd) == 2 * (len(HOSTILE_VALUES) + 1)
    names = set()
    for words in odd:
        sweeps = [words[i + 1] for i, w in enumerate(words) if w == "--sweep"]
        assert sorted(sweeps) == ["loss.params", "model.weights_path"]
        name = words[words.index("--run-name") + 1]
        assert name == words[words.index("--out") + 1].split("/")[2] and words[words.index("--dataset") + 1] == "glyphs"
        names.add(name)
    assert len(names) == len(odd)  # one folder per run, whatever the values look like


def test_real_data_config_is_valid_and_asks_for_gpus():
    cfg = load_workflow_config(ROOT / "config/real.yaml")
    runs = expand_runs(cfg)
    assert {r.dataset for r in runs} == {"cub200", "cars196", "sop", "inshop"}
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

    # every shipped experiment config passes Snakemake's own schema check and plans its jobs
    # (cross_batch.yaml declares a list of primary comparisons)
    for config, trainings in (("config/cross_batch.yaml", 21), ("config/config.yaml", 12)):
        dry = subprocess.run(["snakemake", "-n", "all", "--configfile", config], cwd=repo, capture_output=True,
                             text=True, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")})
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert re.search(rf"^train\s+{trainings}$", dry.stdout, re.MULTILINE), dry.stdout


def test_run_json_records_the_labels_and_the_swept_values_typed(tmp_path):
    import argparse
    import json

    from xbml.commands import train
    from xbml.config import load_config

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(["--config", str(ROOT / "config/train/glyphs.yaml"), "--set", "xml.weight=0.3",
                              "--set", "loss.params={alpha: 2.0}", "--seed", "2", "--out", str(tmp_path),
                              "--dataset", "glyphs", "--method", "xml", "--run-name", "xml--xml.weight-0.3",
                              "--sweep", "xml.weight", "--sweep", "loss.params"])
    cfg = load_config(args.config, [*args.overrides, "seed=2"])
    train._write_run_info(args, cfg, {key: train._lookup(cfg, key) for key in args.sweep})
    info = json.loads((tmp_path / "run.json").read_text())
    assert (info["dataset"], info["method"], info["run"], info["seed"]) == ("glyphs", "xml", "xml--xml.weight-0.3", 2)
    assert info["swept"] == {"xml.weight": 0.3, "loss.params": {"alpha": 2.0}}
    assert info["config"]["xml"]["weight"] == 0.3
    with pytest.raises(ConfigError, match="--sweep xml.wieght"):
        train._lookup(cfg, "xml.wieght")


def test_no_rule_input_is_ancient():
    """Snakemake does not rerun the jobs below a rerun job when their inputs are all ancient: a
    changed setting would keep stale metrics (test_snakemake_dvc.py shows the change reaching
    the report end to end)."""
    profiles = [ROOT / "workflow/profiles/default/config.yaml", ROOT / "slurm/config.yaml",
                *sorted((ROOT / "workflow/profiles").glob("*/config.yaml"))]
    for path in profiles:
        assert "consider-ancient" not in (yaml.safe_load(path.read_text()) or {}), path
    for path in [ROOT / "workflow/Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]:
        assert "ancient(" not in path.read_text(), path


def test_mlrc_4fold_makes_each_run_four_fold_models_reported_concatenated_and_separately():
    cfg = _config()
    cfg["datasets"]["glyphs"].update(protocol="mlrc_4fold", val_fraction=0.0)
    runs = expand_runs(cfg)
    assert len(runs) == 2 * 2  # still one run per setting and seed: the table's rows
    run = runs[0]
    assert run.models == tuple(f"seed{run.seed}-fold{k}" for k in range(4))
    assert [run.model_overrides(m)[-1] for m in run.models] == [f"data.fold={k}" for k in range(4)]
    assert run.row_splits(["val", "test"]) == ["val", "test", "test_separated"]
    assert run.metric_sources("test") == (f"{run.concatenated}/metrics_test.json",)
    assert run.metric_sources("test_separated") == tuple(f"{m}/metrics_test.json" for m in run.model_folders)
    assert run.metric_sources("val") == tuple(f"{m}/metrics_val.json" for m in run.model_folders)
    standard = expand_runs(_config())[0]
    assert standard.models == ("seed0",) and standard.metric_sources("test") == (f"{standard.folder}/metrics_test.json",)


def test_mlrc_4fold_with_validation_classes_set_aside_is_refused():
    cfg = _config()
    cfg["datasets"]["glyphs"]["protocol"] = "mlrc_4fold"
    with pytest.raises(ConfigError, match="datasets.glyphs.val_fraction: .*set val_fraction: 0"):
        expand_runs(cfg)


def test_the_plan_of_the_default_and_real_configs_is_read_without_torch():
    """Snakemake validates every run's config while it parses the DAG (each `snakemake` call and,
    on a cluster, each job): component names are read from torch-free catalogs. (An XBM run's
    check asks pytorch-metric-learning which losses its memory supports, so config/cross_batch.yaml
    imports it.)"""
    code = (
        "import sys\n"
        "from xbml.workflow.plan import expand_runs, load_workflow_config\n"
        "for path in sys.argv[1:]:\n"
        "    assert expand_runs(load_workflow_config(path)), path\n"
        "heavy = sorted(m for m in ('torch', 'pytorch_metric_learning', 'torchvision') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    configs = [str(ROOT / "config" / name) for name in ("config.yaml", "real.yaml")]
    subprocess.run([sys.executable, "-c", code, *configs], check=True, cwd=ROOT)
