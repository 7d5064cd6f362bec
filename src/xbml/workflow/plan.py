"""The experiment plan: config/config.yaml -> the list of runs, validated before any job starts.

Snakemake (workflow/rules/common.smk) reads it; `dvc repro` runs Snakemake, so the
front doors cannot disagree about what a run is.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xbml.errors import ConfigError
from xbml.metric_names import PRIMARY_METRIC, TESTED_METRICS

# package data, so the package reads no file of the repository it is not given;
# workflow/schemas/config.schema.yaml (where Snakemake's validate reads it) links to it
SCHEMA = Path(__file__).with_name("config.schema.yaml")

# run names become folder names, wildcards and shell words: one alphabet, no shell meaning
RUN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(--[A-Za-z0-9_.]+-[A-Za-z0-9_.-]+)*")
RUN_NAME_PATTERN = RUN_NAME.pattern  # the `run` wildcard of the Snakefile
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,40}")


#: protocol mlrc_4fold (config key datasets.<name>.protocol), after MLRC (Musgrave et al., 2020): four class-disjoint folds of the training classes; a run is four
#: fold models, each validated on its held-out fold
MLRC_FOLDS = 4
# a run's model folders: seed<k>, or seed<k>-fold<j> under mlrc_4fold; the fold models' test
# embeddings concatenated live in seed<k>-concatenated (the `model` wildcard of the Snakefile)
MODEL_PATTERN = r"seed\d+(-fold\d+)?"
CONCATENATED_PATTERN = r"seed\d+-concatenated"
#: the rows a run has in the metrics table beyond its evaluated splits (mlrc_4fold)
SEPARATED = "test_separated"


@dataclass(frozen=True)
class Run:
    """One seed of one method setting on one dataset: a row of the metrics table per split.

    Under the standard protocol it is one model (folder ``seed<k>``); under ``mlrc_4fold`` it is
    four fold models (``seed<k>-fold<j>``), reported concatenated (``test``, their test embeddings
    side by side) and separately (``test_separated`` and ``val``: the mean over the fold models).
    """

    dataset: str
    name: str  # method, plus its swept values as a slug: "xml--xml.weight-0.2"
    method: str
    seed: int
    overrides: tuple[str, ...]
    swept: tuple[tuple[str, object], ...] = field(default=())  # (key, typed value)
    folds: tuple[int, ...] = field(default=())  # mlrc_4fold: the fold of each model

    @property
    def root(self) -> str:
        return f"results/{self.dataset}/{self.name}"

    @property
    def models(self) -> tuple[str, ...]:
        """The folder name of each trained model of this run."""
        if not self.folds:
            return (f"seed{self.seed}",)
        return tuple(f"seed{self.seed}-fold{k}" for k in self.folds)

    @property
    def model_folders(self) -> tuple[str, ...]:
        return tuple(f"{self.root}/{m}" for m in self.models)

    @property
    def folder(self) -> str:
        """The folder of the run's first model: its logs, model and embeddings stand for the run in
        the curves and pictures of the report (fold 0 under mlrc_4fold)."""
        return self.model_folders[0]

    @property
    def concatenated(self) -> str:
        return f"{self.root}/seed{self.seed}-concatenated"

    def model_overrides(self, model: str) -> tuple[str, ...]:
        """The `--set` arguments of one of its models: a fold model adds its data.fold."""
        if model not in self.models:
            raise ConfigError(f"run {self.name} seed {self.seed} has no model {model!r} (it has {', '.join(self.models)})")
        if not self.folds:
            return self.overrides
        return (*self.overrides, f"data.fold={self.folds[self.models.index(model)]}")

    def row_splits(self, eval_splits: list[str]) -> list[str]:
        """The splits of its rows in the metrics table."""
        if not self.folds:
            return list(eval_splits)
        return [s for s in eval_splits if s == "val"] + (["test", SEPARATED] if "test" in eval_splits else [])

    def metric_sources(self, split: str) -> tuple[str, ...]:
        """The metrics files whose mean is its row of `split` (one file, except for the fold
        models' separate rows)."""
        if not self.folds:
            return (f"{self.folder}/metrics_{split}.json",)
        if split == "test":
            return (f"{self.concatenated}/metrics_test.json",)
        evaluated = "test" if split == SEPARATED else split
        return tuple(f"{m}/metrics_{evaluated}.json" for m in self.model_folders)


def value_slug(value) -> str:
    """A swept value as a folder-name word: itself where it is plain (0.1, resnet50), else a
    short hash of its canonical JSON (a mapping, a path with spaces or shell characters)."""
    text = _override_value(value)
    if _PLAIN_VALUE.fullmatch(text):
        return text
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"h{digest}"


def run_name(method: str, swept: tuple[tuple[str, object], ...]) -> str:
    """The one formatter of run names: `method` or `method--key-value--key-value`."""
    name = "".join([method, *(f"--{key}-{value_slug(value)}" for key, value in swept)])
    if not RUN_NAME.fullmatch(name):
        raise ConfigError(
            f"workflow config: run name {name!r} of method {method!r} is not a safe name; "
            "method names may use letters, digits and _ and must start with a letter"
        )
    return name


def _schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def _fill_defaults(node, schema: dict, root: dict):
    """Apply the schema's `default`s (jsonschema validates but does not fill)."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].split("/")[-1]]
    for alternative in schema.get("oneOf", ()):  # the alternative of the node's kind (validated before)
        kind = "array" if alternative.get("type") == "array" else "object"
        if (kind == "array") == isinstance(node, list):
            return _fill_defaults(node, alternative, root)
    if isinstance(node, list) and isinstance(schema.get("items"), dict):
        return [_fill_defaults(item, schema["items"], root) for item in node]
    if not isinstance(node, dict):
        return node
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if key in node:
            node[key] = _fill_defaults(node[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in node:
            if key not in schema.get("properties", {}):
                node[key] = _fill_defaults(node[key], extra, root)
    return node


def validate_config(config: dict) -> dict:
    """Schema check + defaults; errors name the offending key."""
    import jsonschema

    schema = _schema()
    config = copy.deepcopy(config)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ConfigError(f"workflow config key {where}: {e.message}")
    return _fill_defaults(config, schema, schema)


def load_workflow_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"workflow config {path} does not exist")
    return validate_config(yaml.safe_load(path.read_text()) or {})


def _override_value(value) -> str:
    """A value as `--set` parses it back (YAML flow style, one line)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _override_args(mapping: dict) -> list[str]:
    return [f"{key}={_override_value(value)}" for key, value in mapping.items()]


def _expand_method(name: str, overrides: dict) -> list[tuple[str, dict, tuple]]:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise ConfigError(
            f"workflow config key methods: method name {name!r} must be a string of letters, digits and _ "
            "that starts with a letter"
        )
    fixed = {k: v for k, v in overrides.items() if not isinstance(v, list)}
    swept = [(k, v) for k, v in overrides.items() if isinstance(v, list)]
    for key, values in swept:
        if not values:
            raise ConfigError(
                f"workflow config key methods.{name}.{key}: an empty list sweeps nothing and would drop the "
                "method; give at least one value, or a single value without brackets"
            )
        canonical = [json.dumps(v, sort_keys=True, default=str) for v in values]
        if len(set(canonical)) != len(canonical):
            raise ConfigError(
                f"workflow config key methods.{name}.{key}: the sweep {values!r} repeats a value; "
                "list every value once"
            )
    if not swept:
        return [(name, fixed, ())]
    runs = []
    for values in itertools.product(*[v for _, v in swept]):
        pairs = tuple((k, val) for (k, _), val in zip(swept, values))
        runs.append((run_name(name, pairs), {**fixed, **dict(pairs)}, pairs))
    return runs


def expand_runs(config: dict, check: bool = True) -> list[Run]:
    """Every (dataset, method or swept setting, seed) run; with check, each run's training config
    is resolved now so a misspelt key fails before any job runs."""
    from xbml.config import load_config

    runs = []
    if config["baseline"] not in config["methods"]:
        raise ConfigError(
            f"workflow config key baseline: {config['baseline']!r} is not one of the methods "
            f"({', '.join(config['methods'])})"
        )
    if check:
        from xbml.datasets.registry import dataset_names

        unknown = sorted(set(config["datasets"]) - set(dataset_names()))
        if unknown:
            raise ConfigError(
                f"workflow config key datasets: unknown dataset(s) {unknown}; valid: {', '.join(dataset_names())}"
            )
    for dataset, dcfg in config["datasets"].items():
        folds = _protocol_folds(dataset, dcfg)
        for method, overrides in config["methods"].items():
            for name, resolved, pairs in _expand_method(method, overrides or {}):
                args = _override_args({**dcfg["overrides"], **resolved})
                if check:
                    try:
                        load_config(dcfg["train_config"], args)
                    except ConfigError as exc:
                        raise ConfigError(f"workflow config, method {method!r} on dataset {dataset!r}: {exc}") from None
                for seed in config["seeds"]:
                    runs.append(Run(dataset, name, method, seed, tuple(args), pairs, folds))
    _refuse_name_collisions(runs)
    return runs


@dataclass(frozen=True)
class PrimaryComparison:
    """A comparison with the baseline declared before the run (config report.primary)."""

    run: str
    metric: str
    split: str
    declared: bool = True  # False: not in the config, the one possible comparison taken by default

    def __str__(self) -> str:
        return f"{self.run} vs the baseline, {self.metric} on {self.split}"


def primary_comparisons(config: dict) -> list[PrimaryComparison]:
    """The declared primary comparison(s), checked against the plan: each names one fully
    specified run besides the baseline, once. Without a declaration, a config with exactly one
    such run compares it on test MAP@R; any other config must declare one."""
    names: dict[str, list[str]] = {}  # method -> its run names
    for method, overrides in config["methods"].items():
        names[method] = [name for name, _, _ in _expand_method(method, overrides or {})]
    baseline = config["baseline"]
    others = [n for m, runs in names.items() if m != baseline for n in runs]
    declared = config.get("report", {}).get("primary")
    key = "workflow config key report.primary"
    example = f"report.primary: {{run: {others[0] if others else 'xml'}, metric: map_at_r, split: test}}"
    if declared is None:
        if not others:
            return []  # nothing to compare with the baseline
        if len(others) == 1:
            return [PrimaryComparison(others[0], PRIMARY_METRIC, "test", declared=False)]
        raise ConfigError(
            f"{key} is missing and the config has {len(others)} runs besides the baseline "
            f"({', '.join(others) or 'none'}): declare the comparison that answers the experiment's question "
            f"before the run, e.g. {example}; every other comparison is then reported as exploratory"
        )
    out = []
    for entry in declared if isinstance(declared, list) else [declared]:
        run = entry["run"]
        if run == baseline or names.get(run) == [baseline]:
            raise ConfigError(f"{key}: {run!r} is the baseline; name a run to compare with it")
        if run in names and names[run] != [run]:
            raise ConfigError(
                f"{key}: {run!r} is a swept method ({', '.join(names[run])}); its setting would be picked on "
                f"validation from the same seeds, which makes the primary test depend on the data. Name one run "
                f"(e.g. {names[run][0]}), or give the method a single value"
            )
        if run not in others:
            raise ConfigError(f"{key}: {run!r} is not a run of this config; runs besides the baseline: "
                              f"{', '.join(others) or 'none'}")
        primary = PrimaryComparison(run, entry.get("metric", PRIMARY_METRIC), entry.get("split", "test"))
        if primary.metric not in TESTED_METRICS:
            raise ConfigError(f"{key}: metric {primary.metric!r} is not tested; one of {', '.join(TESTED_METRICS)} "
                              "(recall_at_1 equals precision_at_1)")
        if primary.split == SEPARATED and all(d.get("protocol") != "mlrc_4fold" for d in config["datasets"].values()):
            raise ConfigError(f"{key}: split {SEPARATED} exists only under protocol mlrc_4fold; use split test")
        if "test" not in config.get("eval_splits", ["val", "test"]):
            raise ConfigError(f"{key}: the primary comparison is on the test classes, but eval_splits leaves test "
                              "out; add test to eval_splits")
        if primary in out:
            raise ConfigError(f"{key}: {primary} is declared twice")
        out.append(primary)
    return out


def _protocol_folds(dataset: str, dcfg: dict) -> tuple[int, ...]:
    protocol = dcfg["protocol"]  # the schema's default fills it: standard
    if protocol == "standard":
        return ()
    if dcfg["val_fraction"] != 0:
        raise ConfigError(
            f"workflow config key datasets.{dataset}.val_fraction: protocol {protocol} validates each fold "
            "model on its held-out fold of the training classes, so no classes are set aside for "
            "validation; set val_fraction: 0"
        )
    return tuple(range(MLRC_FOLDS))


def _refuse_name_collisions(runs: list[Run]) -> None:
    owners: dict[tuple[str, str], tuple] = {}
    for run in runs:
        key, owner = (run.dataset, run.name), (run.method, run.swept)
        if owners.setdefault(key, owner) != owner:
            raise ConfigError(
                f"workflow config: two settings would share the run folder results/{run.dataset}/{run.name} "
                f"({owners[key]} and {owner}); rename one of the methods"
            )


def launcher(gpus: int) -> str:
    """How a training command starts: python, or torchrun with one process per GPU. `gpus` is the
    job's `resources.gpu`, which only the profiles set (workflow/profiles/gpu, slurm/config.yaml)."""
    if int(gpus or 0) <= 1:
        return "python"
    return f"python -m torch.distributed.run --standalone --nproc_per_node {int(gpus)}"
