"""What DVC shows of a dataset's results: `dvc metrics show`, `dvc plots show`, `dvc exp show`.

dvc.yaml holds no pipeline of its own: its stage runs Snakemake (Snakemake owns the DAG). DVC
refuses a metrics or plots file inside another output, and the per-run files live inside the
cached results/<dataset>/, so this module writes small copies beside it, under metrics/<dataset>/
(git-tracked, `cache: false`), from the files the runs wrote:

- metrics.json: per run setting and split, the mean over seeds of MAP@R, R-Precision, P@1
- runs.csv: test metrics of every run and seed (one bar each)
- train_curves/<run>_<model>.csv, val_curves/<run>_<model>.csv: train_log.jsonl / val_log.jsonl
  as CSV, which `dvc plots` reads (it has no JSON-lines parser); one file per trained model
  (<model> is seed<k>, or seed<k>-fold<j> under mlrc_4fold)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from statistics import fmean

from xbml.errors import XbmlError
from xbml.metric_names import RANK_METRICS
from xbml.training.run_log import read_jsonl
from xbml.workflow.plan import expand_runs

METRICS = RANK_METRICS


def _read_metrics(path: Path) -> dict:
    if not path.exists():
        raise XbmlError(f"{path} is missing; run `snakemake --cores 8 all` (it evaluates every run) first")
    data = json.loads(path.read_text())
    return {k: float(data[k]) for k in METRICS}


def _write_csv(path: Path, rows: list[dict], header: list[str] | None = None) -> None:
    fields: list[str] = [] if rows else list(header or [])
    for row in rows:
        fields += [k for k in row if k not in fields]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def jsonl_to_csv(source: str | Path, out: str | Path) -> int:
    """A run's train_log.jsonl or val_log.jsonl as CSV, which `dvc plots` reads; returns rows."""
    source = Path(source)
    if not source.exists():
        raise XbmlError(f"{source} is missing; the run has not finished training")
    rows = read_jsonl(source)
    # a run without validation classes (val_fraction 0) has an empty val_log: an empty curve,
    # which `dvc plots show` skips without an error
    _write_csv(Path(out), rows, header=["iteration"])
    return len(rows)


def summarize(config: dict, dataset: str, out: str | Path, root: str | Path = ".") -> dict:
    """Write metrics/<dataset>/ (see the module doc) for the runs the config names; returns metrics.json."""
    root, out = Path(root), Path(out)
    runs = [r for r in expand_runs(config, check=False) if r.dataset == dataset]
    if not runs:
        raise XbmlError(f"the workflow config has no runs on dataset {dataset!r}")
    wanted = {f"{r.name}_{model}.csv" for r in runs for model in r.models}
    for stale in [p for sub in ("train_curves", "val_curves") for p in (out / sub).glob("*.csv")]:
        if stale.name not in wanted:  # a run dropped from the config leaves no curve in the plots
            stale.unlink()
    summary: dict[str, dict] = {}
    per_run = []
    for name in dict.fromkeys(r.name for r in runs):
        seeds = [r for r in runs if r.name == name]
        summary[name] = {}
        for split in seeds[0].row_splits(config["eval_splits"]):
            values = [_row_metrics(root, r, split) for r in seeds]
            summary[name][split] = {k: round(fmean(v[k] for v in values), 6) for k in METRICS}
            if split == "test":
                per_run += [{"run": f"{r.name}/seed{r.seed}", **v} for r, v in zip(seeds, values)]
        summary[name]["seeds"] = len(seeds)
    if per_run:
        _write_csv(out / "runs.csv", per_run)
    else:  # no test split evaluated: the per-run bars show validation instead
        _write_csv(out / "runs.csv", [{"run": f"{r.name}/seed{r.seed}", **_row_metrics(root, r, "val")} for r in runs])
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _row_metrics(root: Path, run, split: str) -> dict:
    """A run's metrics of a split: its file's, or the mean over its fold models' files."""
    values = [_read_metrics(root / source) for source in run.metric_sources(split)]
    return {k: fmean(v[k] for v in values) for k in METRICS}
