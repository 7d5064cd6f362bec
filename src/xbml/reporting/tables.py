"""Tables: the per-run metrics table (`xbml aggregate`) and its summaries over seeds."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from xbml.errors import XbmlError
from xbml.reporting.results import (
    METRICS,
    dataset_runs,
    read_logs,
    read_metrics,
    read_train_summary,
    run_folder,
    scalar,
    swept_keys,
)
from xbml.workflow.plan import Run

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


def aggregate_rows(config: dict, dataset: str, results: str | Path = "results") -> pd.DataFrame:
    """One row per run x evaluated split: ids, swept parameters, every metric, training facts."""
    runs: list[Run] = dataset_runs(config, dataset)
    keys = swept_keys(runs)
    clash = sorted(set(keys) & (set(ID_COLUMNS) | {m for m, _ in METRICS}))
    if clash:
        raise XbmlError(f"swept config keys {clash} collide with column names of the metrics table")
    splits = config.get("eval_splits", ["val", "test"])
    rows = []
    extra_keys: dict[str, None] = {}
    for run in runs:
        folder = run_folder(results, run)
        summary = read_train_summary(folder)
        steps, wall = _train_time(folder, summary)
        selected = _selected_iteration(folder, summary)
        swept = dict(run.swept)
        for split in splits:
            metrics = read_metrics(folder, split)
            row: dict = {"dataset": dataset, "run": run.name, "method": run.method, "seed": run.seed, "split": split}
            row.update({k: swept.get(k) for k in keys})
            for name, _ in METRICS:
                value = scalar(metrics.get(name))
                if name not in metrics or value is None:
                    raise XbmlError(
                        f"metrics file {folder / f'metrics_{split}.json'} has no numeric {name!r}; "
                        "rerun `python -m xbml evaluate` for it"
                    )
                row[name] = value
            for name, value in metrics.items():
                # bookkeeping of the evaluation (num_queries, k, seconds, ...), prefixed to say so
                if name in METRIC_NAMES or name in SKIP_KEYS:
                    continue
                v = scalar(value)
                if v is not None:
                    row[f"eval_{name}"] = v
                    extra_keys[f"eval_{name}"] = None
            row["selected_iteration"] = selected
            row["iterations"] = summary.get("iterations", math.nan)
            row["train_time_s"] = steps
            row["train_wall_time_s"] = wall
            rows.append(row)
    columns = [
        *ID_COLUMNS, *keys, *(m for m, _ in METRICS), *extra_keys,
        "selected_iteration", "iterations", "train_time_s", "train_wall_time_s",
    ]
    return pd.DataFrame(rows, columns=columns)


def read_metrics_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise XbmlError(f"metrics table {path} is missing; run `python -m xbml aggregate` first")
    df = pd.read_csv(path)
    missing = [c for c in (*ID_COLUMNS, *(m for m, _ in METRICS)) if c not in df.columns]
    if missing:
        raise XbmlError(f"metrics table {path} lacks the columns {missing}; rerun `python -m xbml aggregate`")
    return df


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
