"""The experiment plan: config/config.yaml -> the list of runs, validated before any job starts.

Snakemake (workflow/rules/common.smk) and the DVC pipeline generator both read
it, so the two front doors cannot disagree about what a run is.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xbml.errors import ConfigError

SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"

DEFAULT_RESOURCES = {
    "train": {"threads": 1, "mem_mb": 3000, "runtime": 120, "gpus": 0},
    "embed": {"threads": 1, "mem_mb": 2000, "runtime": 30, "gpus": 0},
    "evaluate": {"threads": 1, "mem_mb": 1000, "runtime": 30, "gpus": 0},
}


@dataclass(frozen=True)
class Run:
    dataset: str
    name: str  # method, plus its swept values: "xml_w@xml.weight=0.2"
    method: str
    seed: int
    overrides: tuple[str, ...]
    swept: tuple[tuple[str, object], ...] = field(default=())

    @property
    def folder(self) -> str:
        return f"results/{self.dataset}/{self.name}/seed{self.seed}"


def _schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def _fill_defaults(node, schema: dict, root: dict):
    """Apply the schema's `default`s (jsonschema validates but does not fill)."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].split("/")[-1]]
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


def _override_args(mapping: dict) -> list[str]:
    out = []
    for key, value in mapping.items():
        out.append(f"{key}={yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix('...').strip()}")
    return out


def _expand_method(name: str, overrides: dict) -> list[tuple[str, dict, tuple]]:
    fixed = {k: v for k, v in overrides.items() if not isinstance(v, list)}
    swept = [(k, v) for k, v in overrides.items() if isinstance(v, list)]
    if not swept:
        return [(name, fixed, ())]
    runs = []
    for values in itertools.product(*[v for _, v in swept]):
        pairs = tuple((k, val) for (k, _), val in zip(swept, values))
        label = ",".join(f"{k}={val}" for k, val in pairs)
        runs.append((f"{name}@{label}", {**fixed, **dict(pairs)}, pairs))
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
        for method, overrides in config["methods"].items():
            for name, resolved, pairs in _expand_method(method, overrides or {}):
                args = _override_args({**dcfg["overrides"], **resolved})
                if check:
                    try:
                        load_config(dcfg["train_config"], args)
                    except ConfigError as exc:
                        raise ConfigError(f"workflow config, method {method!r} on dataset {dataset!r}: {exc}") from None
                for seed in config["seeds"]:
                    runs.append(Run(dataset, name, method, seed, tuple(args), pairs))
    return runs


def resources(config: dict, rule: str) -> dict:
    return {**DEFAULT_RESOURCES[rule], **config.get("resources", {}).get(rule, {})}


def launcher(gpus: int) -> str:
    """How a training command starts: python, or torchrun with one process per GPU."""
    if int(gpus or 0) <= 1:
        return "python"
    return f"python -m torch.distributed.run --standalone --nproc_per_node {int(gpus)}"
