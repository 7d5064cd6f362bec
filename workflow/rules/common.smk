# Helpers shared by the rules: the validated config, the run plan and command lines.
# The plan comes from xbml.workflow.plan; Snakemake alone owns the DAG (dvc.yaml only runs it).
# Threads and resources come from profiles (workflow/profiles/, slurm/), never from here.

import copy
import os
import shlex
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
    CONCATENATED_PATTERN,
    MODEL_PATTERN,
    RUN_NAME_PATTERN,
    expand_runs,
    launcher,
    primary_comparisons,
    validate_config,
)

try:
    CONFIG = validate_config(config)
    RUNS = expand_runs(CONFIG)
    primary_comparisons(CONFIG)  # declared before any job runs, or refused now
except XbmlError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

# aggregate and report re-read the config: hand them the file this run was started with
CONFIG_PATH = str((workflow.overwrite_configfiles or ["config/config.yaml"])[-1])
# the captions of the report's figures; relative, so that moving the checkout changes no input
CAPTIONS = os.path.relpath(Path(workflow.basedir) / "report")
CAPTION_FILES = sorted(str(p) for p in Path(CAPTIONS).glob("*.rst"))
DATASETS = list(CONFIG["datasets"])
SPLITS = CONFIG["eval_splits"]
SPLIT_WORDS = " ".join(shlex.quote(s) for s in SPLITS)


wildcard_constraints:
    dataset="[A-Za-z0-9_]+",
    run=RUN_NAME_PATTERN,
    model=MODEL_PATTERN,
    seed=r"\d+",
    split="val|test",


def runs_of(dataset):
    return [r for r in RUNS if r.dataset == dataset]


def find_run(wildcards):
    """The run one of whose models (seed<k>, seed<k>-fold<j>) the wildcards name."""
    for r in RUNS:
        if (r.dataset, r.name) == (
            wildcards.dataset,
            wildcards.run,
        ) and wildcards.model in r.models:
            return r
    raise WorkflowError(
        f"no model {wildcards.model} of run {wildcards.run} for {wildcards.dataset} in the config"
    )


def find_unit(wildcards):
    """The run of the wildcards' seed (for the rules that combine its fold models)."""
    for r in RUNS:
        if (r.dataset, r.name, r.seed) == (
            wildcards.dataset,
            wildcards.run,
            int(wildcards.seed),
        ):
            return r
    raise WorkflowError(
        f"no run {wildcards.run} seed {wildcards.seed} for {wildcards.dataset} in the config"
    )


def split_files(pattern):
    """One path per evaluated split; the other wildcards stay wildcards."""
    return [pattern.replace("{split}", split) for split in SPLITS]


def dataset_cfg(wildcards):
    return CONFIG["datasets"][wildcards.dataset]


def train_args(wildcards):
    """The `--set` and label arguments of a run, shell-quoted (values come from the config)."""
    run = find_run(wildcards)
    overrides = run.model_overrides(wildcards.model)
    sets = [f"data.prepared=data/prepared/{wildcards.dataset}", *overrides]
    words = [f"--set {shlex.quote(a)}" for a in sets]
    words += [f"--sweep {shlex.quote(key)}" for key, _ in run.swept]
    words += [
        f"--dataset {shlex.quote(run.dataset)}",
        f"--method {shlex.quote(run.method)}",
        f"--run-name {shlex.quote(run.name)}",
        f"--seed {run.seed}",
    ]
    return " ".join(words)


def train_launcher(wildcards, resources):
    """`python`, or torchrun with one process per GPU when the job has several (docs/slurm.md)."""
    return launcher(resources.get("gpu", 0))


def metrics_of(dataset):
    """Every metrics file the rows of the dataset's metrics table are made of."""
    return [
        source
        for r in runs_of(dataset)
        for split in r.row_splits(SPLITS)
        for source in r.metric_sources(split)
    ]


def fold_embeddings(wildcards):
    """The test embeddings of a run's fold models, in fold order (concatenated in that order)."""
    run = find_unit(wildcards)
    if not run.folds:
        raise WorkflowError(
            f"run {run.name} seed {run.seed} of {run.dataset} has no fold models to concatenate "
            "(its dataset's protocol is standard)"
        )
    return [f"{m}/embeddings_{wildcards.split}.npz" for m in run.model_folders]


def curves_of(dataset):
    return [
        f"metrics/{dataset}/{kind}_curves/{r.name}_{model}.csv"
        for r in runs_of(dataset)
        for model in r.models
        for kind in ("train", "val")
    ]


def report_inputs(wildcards):
    """The files `xbml report` opens beyond the table, the data version, the prepared images, the
    config and the captions (named in the rule): each model's run record, summary, logs and model, its
    test embeddings (pictures), and the benchmark files of the jobs before it (the cost table).
    """
    dataset = wildcards.dataset
    runs = runs_of(dataset)
    folders = [f for r in runs for f in r.model_folders]
    files = (
        "run.json",
        "train_summary.json",
        "train_log.jsonl",
        "val_log.jsonl",
        "model.pt",
    )
    bench = f"results/{dataset}/benchmarks"
    models = [(r.name, m) for r in runs for m in r.models]
    return {
        "runs": [f"{folder}/{name}" for folder in folders for name in files],
        "embeddings": (
            [f"{f}/embeddings_test.npz" for f in folders] if "test" in SPLITS else []
        ),
        "benchmarks": [f"{bench}/fetch.tsv"]
        + [
            f"{bench}/{rule}/{run}/{model}.tsv"
            for rule in ("train", "embed_evaluate")
            for run, model in models
        ],
    }


def dataset_targets(dataset):
    """What `dvc repro`'s stage of a dataset asks Snakemake for (dvc.yaml names the same paths)."""
    return [f"reports/{dataset}/index.html", f"metrics/{dataset}/metrics.json"]


def all_targets():
    return [t for d in DATASETS for t in dataset_targets(d)]
