"""Tables: the per-run metrics table (`xbml aggregate`) and its summaries over seeds."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from xbml.errors import XbmlError
from xbml.reporting.results import (
    METRICS,
    dataset_runs,
    evaluate_fix,
    metric_problem,
    read_json,
    read_logs,
    read_text,
    read_train_summary,
    scalar,
    swept_keys,
    under,
)
from xbml.workflow.plan import Run

log = logging.getLogger(__name__)

ID_COLUMNS = ("dataset", "run", "method", "seed", "split")
METRIC_NAMES = {m for m, _ in METRICS}
# bookkeeping of a metrics file that is not a metric of the run
SKIP_KEYS = {"split", "dataset", "run", "method", "seed"}


def _train_time(folder: Path, summary: dict) -> tuple[float, float]:
    """(sum of the logged step times, wall time of the process that finished training)."""
    records, _ = read_logs(folder)
    steps = math.fsum(float(r.get("time_s", 0.0)) for r in records) if records else math.nan
    wall = summary.get("wall_time_s_this_process")
    return round(steps, 3) if records else math.nan, float(wall) if wall is not None else math.nan


def _selected_iteration(folder: Path, summary: dict) -> float:
    if "selected_iteration" in summary:
        return int(summary["selected_iteration"])
    model = folder / "model.pt"
    if model.exists():  # older runs without a summary: the model file knows
        import torch

        return int(torch.load(model, map_location="cpu", weights_only=True)["selected_iteration"])
    return math.nan


ALLOW_MISSING_HINT = "pass --allow-missing to go on without it (the report then names what is missing)"


@dataclass(frozen=True)
class Gap:
    """A planned (run, seed, split) whose metrics are missing in part or in full."""

    run: str
    seed: int
    split: str
    what: str  # e.g. "no metrics file", "map_at_r = nan (not finite)"

    def __str__(self) -> str:
        return f"{self.run} seed {self.seed} ({self.split}): {self.what}"


def _metric_values(path: Path, metrics: dict, allow_missing: bool) -> tuple[dict[str, float], list[str]]:
    """The retrieval metrics of one metrics file; an invalid one stops, or is NaN with `allow_missing`."""
    values, problems = {}, []
    for name, _ in METRICS:
        raw = metrics.get(name)
        problem = metric_problem(raw)
        if problem is None:
            values[name] = float(raw)
            continue
        shown = "absent" if name not in metrics else json.dumps(raw) if not isinstance(raw, float) else repr(raw)
        if not allow_missing:
            raise XbmlError(
                f"metrics file {path}: key {name!r} is {shown} ({problem}; a retrieval metric is a finite "
                f"number in [0, 1]); rerun `python -m xbml evaluate` for it, or {ALLOW_MISSING_HINT}"
            )
        values[name] = math.nan
        problems.append(f"{name} = {shown} ({problem})")
    return values, problems


def _train_facts(folders: list[Path]) -> dict:
    """What training a run cost and chose; a run of several (fold) models sums their times and
    gives the mean selected iteration."""
    summaries = [read_train_summary(f) for f in folders]
    times = [_train_time(f, s) for f, s in zip(folders, summaries)]
    selected = [_selected_iteration(f, s) for f, s in zip(folders, summaries)]
    return {
        "selected_iteration": selected[0] if len(selected) == 1 else float(np.mean(selected)),
        "iterations": summaries[0].get("iterations", math.nan),
        "train_time_s": round(math.fsum(t[0] for t in times), 3),
        "train_wall_time_s": math.fsum(t[1] for t in times),
    }


def _mean_metrics(paths: list[Path], run: Run, split: str, allow_missing: bool) -> tuple[dict, dict]:
    """(retrieval metrics, evaluation bookkeeping prefixed eval_) of a row: the metrics file's,
    or the mean over the files of a run's fold models."""
    values: list[dict] = []
    evaluation: dict[str, list[float]] = {}
    for path in paths:
        metrics = read_json(path, "metrics file", evaluate_fix(split))
        v, problems = _metric_values(path, metrics, allow_missing)
        for problem in problems:
            log.warning("%s", Gap(run.name, run.seed, split, f"{problem} in {path}: written as NaN"))
        values.append(v)
        for name, value in metrics.items():
            # bookkeeping of the evaluation (num_queries, k, seconds, ...), prefixed to say so
            if name in METRIC_NAMES or name in SKIP_KEYS:
                continue
            number = scalar(value)
            if number is not None:
                evaluation.setdefault(f"eval_{name}", []).append(number)
    mean = {m: float(np.mean([v[m] for v in values])) for m in values[0]}
    return mean, {k: float(np.mean(v)) for k, v in evaluation.items()}


def aggregate_rows(config: dict, dataset: str, results: str | Path = "results", allow_missing: bool = False) -> pd.DataFrame:
    """One row per run x evaluated split: ids, swept parameters, every metric, training facts.

    Every configured seed of every run must have every metric, finite and in [0, 1]. With
    `allow_missing` a missing metrics file leaves its row out and an invalid value is written
    as NaN (empty), each logged as a warning; the report names both on its page.
    """
    runs: list[Run] = dataset_runs(config, dataset)
    keys = swept_keys(runs)
    clash = sorted(set(keys) & (set(ID_COLUMNS) | {m for m, _ in METRICS}))
    if clash:
        raise XbmlError(f"swept config keys {clash} collide with column names of the metrics table")
    splits = config.get("eval_splits", ["val", "test"])
    rows = []
    extra_keys: dict[str, None] = {}
    for run in runs:
        facts = _train_facts([under(results, f) for f in run.model_folders])
        swept = dict(run.swept)
        for split in run.row_splits(splits):
            paths = [under(results, f) for f in run.metric_sources(split)]
            absent = [p for p in paths if not p.exists()]
            if absent and allow_missing:
                log.warning("%s", Gap(run.name, run.seed, split, f"no metrics file {absent[0]}: row left out"))
                continue
            values, evaluation = _mean_metrics(paths, run, split, allow_missing)
            row: dict = {"dataset": dataset, "run": run.name, "method": run.method, "seed": run.seed, "split": split}
            row.update({k: swept.get(k) for k in keys})
            row.update(values)
            for name, v in evaluation.items():
                row[name] = v
                extra_keys[name] = None
            row.update(facts)
            rows.append(row)
    columns = [
        *ID_COLUMNS, *keys, *(m for m, _ in METRICS), *extra_keys,
        "selected_iteration", "iterations", "train_time_s", "train_wall_time_s",
    ]
    return pd.DataFrame(rows, columns=columns)


def _table_text(path: Path) -> str:
    fix = "rerun `python -m xbml aggregate` to write it again"
    if not path.exists():
        raise XbmlError(f"metrics table {path} is missing; run `python -m xbml aggregate` first")
    text = read_text(path, "metrics table", fix)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise XbmlError(f"metrics table {path} is not a readable CSV file ({exc}); {fix}") from None
    if not rows or not any(rows[0]):
        raise XbmlError(f"metrics table {path} is empty; {fix}")
    width = len(rows[0])
    for number, row in enumerate(rows[1:], start=2):
        if row and len(row) != width:  # pandas would pad short rows with NaN or fail on long ones
            raise XbmlError(
                f"metrics table {path} is ragged: line {number} has {len(row)} fields, the header {width}; {fix}"
            )
    return text


def read_metrics_table(path: str | Path) -> pd.DataFrame:
    """The table `xbml aggregate` wrote, checked: rectangular, every id and metric column, integer
    seeds, one row per run, seed and split, metrics NaN (missing) or finite in [0, 1]."""
    path = Path(path)
    fix = "rerun `python -m xbml aggregate` to write it again"
    df = pd.read_csv(io.StringIO(_table_text(path)))
    missing = [c for c in (*ID_COLUMNS, *(m for m, _ in METRICS)) if c not in df.columns]
    if missing:
        raise XbmlError(f"metrics table {path} lacks the columns {missing}; rerun `python -m xbml aggregate`")
    seeds = pd.to_numeric(df["seed"], errors="coerce")
    bad = df.index[seeds.isna() | (seeds != seeds.round())]
    if len(bad):
        raise XbmlError(f"metrics table {path}, data row {bad[0] + 1}: seed {df['seed'][bad[0]]} is not an integer; {fix}")
    df["seed"] = seeds.astype(int)
    twice = df[df.duplicated(["dataset", "run", "seed", "split"], keep=False)]
    if len(twice):
        r = twice.iloc[0]
        raise XbmlError(f"metrics table {path} has {len(twice)} rows for run {r['run']} seed {r['seed']} split "
                        f"{r['split']} (one expected); {fix}")
    for name, _ in METRICS:
        values = pd.to_numeric(df[name], errors="coerce")
        wrong = df.index[(values.isna() & df[name].notna()) | ~(values.isna() | values.between(0.0, 1.0))]
        if len(wrong):
            i, value = wrong[0], df[name][wrong[0]]
            shown = repr(value) if isinstance(value, str) else str(value)
            raise XbmlError(f"metrics table {path}, data row {i + 1} ({df['run'][i]} seed {df['seed'][i]}, "
                            f"{df['split'][i]}): {name} = {shown} is not a finite number in [0, 1]; {fix}")
        df[name] = values.astype(float)
    return df


def table_gaps(df: pd.DataFrame, runs: list[Run], splits: list[str]) -> list[Gap]:
    """Every planned (run, seed, split) without a row, and every row with NaN metrics, in plan order."""
    gaps = []
    for run in runs:
        for split in run.row_splits(splits):
            rows = df[(df["run"] == run.name) & (df["seed"] == run.seed) & (df["split"] == split)]
            if rows.empty:
                gaps.append(Gap(run.name, run.seed, split, "no row in the metrics table"))
                continue
            nan = [m for m, _ in METRICS if rows[m].isna().any()]
            if nan:
                gaps.append(Gap(run.name, run.seed, split, f"{', '.join(nan)} NaN"))
    return gaps


def summary_over_seeds(df: pd.DataFrame, split: str, run_order: list[str], metrics=None) -> pd.DataFrame:
    """Mean, sample std and number of seeds of every metric, one row per run, in run order."""
    metrics = [m for m, _ in METRICS] if metrics is None else list(metrics)
    part = df[df["split"] == split]
    out = []
    for run in run_order:
        rows = part[part["run"] == run]
        if rows.empty:
            continue
        rec: dict = {"run": run, "method": rows["method"].iloc[0], "seeds": int(rows["seed"].nunique())}
        for m in metrics:
            values = rows[m].astype(float)
            rec[f"{m}_mean"] = float(values.mean())
            rec[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        out.append(rec)
    return pd.DataFrame(out)


def per_seed(df: pd.DataFrame, run: str, split: str, metric: str) -> dict[int, float]:
    part = df[(df["run"] == run) & (df["split"] == split)]
    return {int(s): float(v) for s, v in zip(part["seed"], part[metric])}
