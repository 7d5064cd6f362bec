# Helpers shared by the rules: the validated config, the run plan and command lines.
# The plan comes from xbml.workflow.plan, the same code that writes dvc.yaml.

import copy
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

# `--configfile X` names a complete experiment (e.g. config/real.yaml): use it instead of
# config/config.yaml rather than merging the two, which would mix their datasets and methods
if workflow.overwrite_configfiles:
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))

validate(config, "../schemas/config.schema.yaml")

from xbml.errors import XbmlError
from xbml.workflow.plan import (
    RUN_NAME_PATTERN,
    expand_runs,
    launcher,
    resources,
    validate_config,
)

try:
    CONFIG = validate_config(config)
    RUNS = expand_runs(CONFIG)
except XbmlError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

# aggregate and report re-read the config: hand them the file this run was started with
CONFIG_PATH = str((workflow.overwrite_configfiles or ["config/config.yaml"])[-1])
DATASETS = list(CONFIG["datasets"])
SPLITS = CONFIG["eval_splits"]


wildcard_constraints:
    dataset="[A-Za-z0-9_]+",
    run=RUN_NAME_PATTERN,
    seed=r"\d+",
    split="val|test",


def runs_of(dataset):
    return [r for r in RUNS if r.dataset == dataset]


def find_run(wildcards):
    for r in RUNS:
        if (r.dataset, r.name, r.seed) == (wildcards.dataset, wildcards.run, int(wildcards.seed)):
            return r
    raise WorkflowError(f"no run {wildcards.run} seed {wildcards.seed} for {wildcards.dataset} in the config")


def dataset_cfg(wildcards):
    return CONFIG["datasets"][wildcards.dataset]


def train_args(wildcards):
    """The `--set` arguments of a run, shell-quoted."""
    run = find_run(wildcards)
    args = [f"data.prepared=data/prepared/{wildcards.dataset}", *run.overrides]
    return " ".join(f"--set {shlex.quote(a)}" for a in args)


def res(rule_name, key):
    return resources(CONFIG, rule_name)[key]


def train_launcher(wildcards, resources):
    """`python`, or torchrun with one process per GPU when the job has several (docs/slurm.md)."""
    return launcher(resources.get("gpu", 0))


def metrics_of(dataset):
    return [f"{r.folder}/metrics_{split}.json" for r in runs_of(dataset) for split in SPLITS]


def all_targets():
    return [f"reports/{d}/index.html" for d in DATASETS]


# dvc.yaml is a pure function of this config: keep it in step so `dvc repro` and
# the version rule's `dvc commit` see the same stages as this run
if CONFIG["dvc"]["enabled"]:
    from xbml.workflow.dvc_pipeline import sync as _sync_dvc_pipeline

    if _sync_dvc_pipeline(CONFIG, CONFIG_PATH):
        print(f"dvc.yaml regenerated from {CONFIG_PATH}", file=sys.stderr)
