"""Results trees written by hand, as `xbml train`/`evaluate` would lay them out, for tests of
`xbml aggregate` and `xbml report` that need no training."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import yaml

from conftest import PYTHON, ROOT
from xbml.reporting.results import METRICS

DATASET = "syn"
NUM_CLASSES = 100
NUM_PROTOTYPES = 16


def metric_values(seed: int, split: str, effect: float, wiggle: float) -> dict[str, float]:
    """Deterministic metrics in (0, 1): the baseline's value plus `effect`, +-`wiggle` by seed parity."""
    base = 0.40 + 0.013 * seed + (0.02 if split == "val" else 0.0)
    shift = effect + wiggle * (1 if seed % 2 else -1)
    return {name: round(base + shift + 0.03 * i, 6) for i, (name, _) in enumerate(METRICS)}


def xml_summary(learned: bool = True, ratio: float = 0.87, num_classes: int = NUM_CLASSES) -> dict:
    """XML's block of train_summary.json's "regularizers", as xbml.regularizers.summarise writes it."""
    chance = math.log(num_classes)
    return {
        "label": "XML prediction loss", "weight": 0.3, "chance_loss": chance, "final_loss": ratio * chance,
        "ratio_to_chance": ratio, "learned": learned, "window_iterations": 10,
        "diagnostics": {"assign_entropy": {"label": "assignment entropy (nats)", "value": 1.1},
                        "effective_prototypes": {"label": "effective prototypes", "value": 9.5}},
        "facts": {"prediction_loss": "proxy_softmax", "features": "projected", "num_classes": num_classes,
                  "num_prototypes": NUM_PROTOTYPES, "max_entropy": math.log(NUM_PROTOTYPES)},
    }


def train_log(xml: bool, ratio: float = 0.87, iterations: int = 100, num_classes: int = NUM_CLASSES) -> list[dict]:
    chance = math.log(num_classes)
    records = []
    for it in range(1, iterations + 1):
        r = {"iteration": it, "loss": 1.0 - 0.004 * it, "loss_base": 1.0 - 0.004 * it, "time_s": 0.01}
        if xml:
            frac = it / iterations
            r.update(loss_xml=chance * (1.0 - (1.0 - ratio) * frac), xml_chance=chance, xml_assign_entropy=1.1,
                     xml_effective_prototypes=9.5)
        records.append(r)
    return records


def write_tree(base: Path, methods: dict | None = None, seeds=(0, 1, 2), splits=("val", "test"),
               summaries: dict | None = None, report: dict | None = None, effects: dict | None = None) -> dict:
    """A workflow config and results/syn/<run>/seed<s>/ with metrics files, summaries and logs
    (a validation log too when "val" is a split).

    `summaries` maps a run name to XML's block in train_summary.json's "regularizers" for all its
    seeds (a dict, None for a baseline, or the string "absent" for a summary without it);
    runs not named get a learned summary when they use XML and None otherwise. `effects` maps a
    run name to (effect, wiggle) of its metrics over the baseline's; by default run k of the
    config is 0.01 * k better, +-0.0005 by seed.
    """
    from xbml.workflow.plan import expand_runs, validate_config

    methods = methods or {"baseline": {}, "xml": {"xml.weight": 0.3}}
    summaries = summaries or {}
    train_cfg = base / "train.yaml"
    train_cfg.parent.mkdir(parents=True, exist_ok=True)
    train_cfg.write_text("{}\n")
    workflow = {
        "datasets": {DATASET: {"train_config": str(train_cfg)}},
        "methods": methods, "baseline": "baseline", "seeds": list(seeds), "eval_splits": list(splits),
        "report": {"retrieval_queries": 0, "tsne_classes": 0, **(report or {})},
    }
    others = [r.name for r in expand_runs(validate_config({**workflow, "report": {}}), check=False)
              if r.method != "baseline"]
    if len(dict.fromkeys(others)) > 1 and "primary" not in workflow["report"]:
        # a config with several runs must declare its question: the first run's test MAP@R here
        workflow["report"]["primary"] = {"run": others[0], "metric": "map_at_r", "split": "test"}
    config_path = base / "config.yaml"
    config_path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    results = base / "results"
    names = list(dict.fromkeys(r.name for r in expand_runs(validate_config(workflow), check=False)))
    for run in expand_runs(validate_config(workflow), check=False):
        folder = results / Path(run.folder).relative_to("results")
        folder.mkdir(parents=True, exist_ok=True)
        k = names.index(run.name)
        effect, wiggle = (effects or {}).get(run.name, (0.01 * k, 0.0005 * (k > 0)))
        for split in splits:
            values = {**metric_values(run.seed, split, effect, wiggle), "num_queries": 50, "split": split}
            (folder / f"metrics_{split}.json").write_text(json.dumps(values))
        uses_xml = any(o.startswith("xml.weight=") and float(o.split("=")[1]) > 0 for o in run.overrides)
        xml = summaries.get(run.name, xml_summary() if uses_xml else None)
        summary = {"iterations": 100, "selected_iteration": 80, "wall_time_s_this_process": 3.0, "regularizers": {}}
        if isinstance(xml, dict):
            summary["regularizers"]["xml"] = xml
        elif xml == "absent":
            del summary["regularizers"]
        (folder / "train_summary.json").write_text(json.dumps(summary))
        ratio = xml["ratio_to_chance"] if isinstance(xml, dict) and xml.get("ratio_to_chance") else 1.0
        lines = [json.dumps(r) for r in train_log(uses_xml, ratio)]
        (folder / "train_log.jsonl").write_text("\n".join(lines) + "\n")
        if "val" in splits:
            final = metric_values(run.seed, "val", effect, 0.0)["map_at_r"]
            evals = [{"iteration": it, "map_at_r": round(final * it / 100, 6)} for it in (20, 40, 60, 80, 100)]
            (folder / "val_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    return {"config": config_path, "results": results, "base": base}


def cli(*args, python_flags=()) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([PYTHON, *python_flags, "-m", "xbml", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env=env)


def aggregate(tree: dict, out: Path, *extra) -> subprocess.CompletedProcess:
    return cli("aggregate", "--config", tree["config"], "--dataset", DATASET, "--results", tree["results"],
               "--out", out, *extra)


def report(tree: dict, metrics: Path, out: Path, *extra, python_flags=()) -> subprocess.CompletedProcess:
    return cli("report", "--config", tree["config"], "--dataset", DATASET, "--results", tree["results"],
               "--metrics", metrics, "--out", out, *extra, python_flags=python_flags)


def imported_modules(stderr: str) -> set[str]:
    """The modules a process run with `python_flags=("-X", "importtime")` imported, from its stderr."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
