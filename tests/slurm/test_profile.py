"""The Slurm profile says what docs/slurm.md promises, in the terms of the installed plugin.

No Slurm needed: the profile is parsed the way `snakemake --profile slurm` parses it, and the
sbatch options are built with the plugin's own functions (test_slurm_workflow.py runs it for real).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml

from conftest import ROOT

PROFILE = ROOT / "slurm/config.yaml"
WORKFLOW_PROFILE = ROOT / "workflow/profiles/default/config.yaml"
GPU_RULES = ("train", "embed_evaluate")
CPU_RULES = ("fetch", "prepare", "evaluate")


def _profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


class _Resources(dict):
    """What the plugin reads from job.resources: .get() and attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _sbatch_options(rule: str) -> str:
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    profile = _profile()
    resources = _Resources({**profile["default-resources"], **profile["set-resources"].get(rule, {})})
    job = SimpleNamespace(resources=resources, threads=profile["set-threads"].get(rule, 1), name=rule)
    settings = SimpleNamespace(requeue=profile.get("slurm-requeue", False), no_requeue=False, qos=None,
                               reservation=None)
    params = {"run_uuid": "run", "slurm_logfile": "log", "comment_str": f"rule_{rule}", "account": "",
              "partition": "", "workdir": "."}
    return get_submit_command(job, params, settings=settings) + set_gres_string(job)


def test_profile_name_resolves_to_the_folder_in_the_repository(monkeypatch):
    from snakemake.cli import get_profile_dir

    monkeypatch.chdir(ROOT)
    _, config_file = get_profile_dir("slurm")
    assert config_file.resolve() == PROFILE.resolve()


def test_snakemake_reads_the_profile_into_slurm_settings(monkeypatch, tmp_path):
    from snakemake.cli import parse_args

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _, args = parse_args(["--profile", "slurm", "--dry-run"])
    assert args.executor == "slurm"
    assert args.retries >= 1 and args.rerun_incomplete
    # no slurmdbd, no sacct: squeue keeps the status checks working (docs/slurm.md)
    assert args.slurm_status_command == "squeue"
    assert 1 <= args.slurm_init_seconds_before_status_checks <= 300 // 3  # MinJobAge default 300 s
    assert args.slurm_requeue is True
    assert {"slurm_account", "slurm_partition", "runtime", "mem_mb"} <= set(args.default_resources.keys())
    for rule in GPU_RULES:
        assert "gpu" in args.set_resources[rule]


@pytest.mark.parametrize("rule", GPU_RULES)
def test_training_and_embedding_ask_for_one_gpu_with_cpus_per_gpu(rule):
    options = _sbatch_options(rule)
    assert "--gpus=1" in options
    assert f"--cpus-per-gpu={_profile()['set-resources'][rule]['cpus_per_gpu']}" in options
    assert "--mem " in options and " -t " in options and "--requeue" in options


@pytest.mark.parametrize("rule", CPU_RULES)
def test_data_and_evaluation_jobs_are_cpu_only(rule):
    options = _sbatch_options(rule)
    assert "--gpus" not in options and "--gres" not in options
    assert "--cpus-per-task=" in options and "--mem " in options and " -t " in options


def _workflow_rules() -> set[str]:
    import re

    files = [ROOT / "workflow/Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]
    pattern = re.compile(r"^(?:rule|checkpoint)\s+(\w+)\s*:", re.MULTILINE)
    return {name for f in files for name in pattern.findall(f.read_text())}


def test_every_profile_key_is_an_option_snakemake_or_the_plugin_accepts():
    """A misspelt key would be a profile setting that silently does nothing."""
    from snakemake.cli import get_argument_parser

    options = {o for action in get_argument_parser()._actions for o in action.option_strings}
    unknown = [key for key in _profile() if f"--{key}" not in options]
    assert not unknown, f"not options of snakemake {sorted(options)[:5]}...: {unknown}"


@pytest.mark.parametrize("section", ["set-resources", "set-threads"])
def test_every_rule_the_profile_sizes_is_a_rule_of_the_workflow(section):
    """A renamed rule would silently fall back to the default resources on the cluster."""
    rules = _workflow_rules()
    assert {"fetch", "prepare", "train", "embed_evaluate", "evaluate"} <= rules  # the parsing finds rules at all
    assert set(_profile()[section]) <= rules, sorted(set(_profile()[section]) - rules)


def test_the_default_workflow_profile_holds_no_cluster_settings():
    workflow = yaml.safe_load(WORKFLOW_PROFILE.read_text())
    cluster_keys = {"executor", "jobs", "cores", "default-resources", "set-resources", "set-threads", "resources"}
    assert not cluster_keys & set(workflow)
    assert not [k for k in workflow if k.startswith("slurm")]
    # it is applied after --profile slurm and would override it key by key: it must agree
    profile = _profile()
    for key in set(workflow) & set(profile):
        assert workflow[key] == profile[key], key
