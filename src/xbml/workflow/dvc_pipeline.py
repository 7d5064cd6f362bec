"""What DVC shows of a dataset's results: `dvc metrics show`, `dvc plots show`, `dvc exp show`.

dvc.yaml holds no pipeline of its own: its stage runs Snakemake (Snakemake owns the DAG). DVC
refuses a metrics or plots file inside another output, and the per-run files live inside the
cached results/<dataset>/, so this module writes small copies beside it, under metrics/<dataset>/
(git-tracked, `cache: false`), from the files the runs wrote:

- metrics.json: per run setting and split, the mean over seeds of MAP@R, R-Precision, P@1, read
  from results/<dataset>/metrics.csv (`xbml aggregate` computes every per-seed and per-fold value
  once; this view only averages its rows)
- runs.csv: test metrics of every run and seed (one bar each), the table's rows
- train_curves/<run>_<model>.csv, val_curves/<run>_<model>.csv: train_log.jsonl / val_log.jsonl
  as CSV, which `dvc plots` reads (it has no JSON-lines parser); one file per trained model
  (<model> is seed<k>, or seed<k>-fold<j> under mlrc_4fold)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from xbml.errors import XbmlError
from xbml.metric_names import RANK_METRICS
from xbml.training.run_log import read_jsonl
from xbml.workflow.plan import expand_runs

METRICS = RANK_METRICS


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


def summarize(config: dict, dataset: str, out: str | Path, metrics_csv: str | Path) -> dict:
    """Write metrics/<dataset>/ (see the module doc) from the dataset's metrics table, the one
    place where per-seed (and per-fold) values are computed; returns metrics.json."""
    from xbml.reporting.tables import read_metrics_table, summary_over_seeds

    out = Path(out)
    runs = [r for r in expand_runs(config, check=False) if r.dataset == dataset]
    if not runs:
        raise XbmlError(f"the workflow config has no runs on dataset {dataset!r}")
    wanted = {f"{r.name}_{model}.csv" for r in runs for model in r.models}
    for stale in [p for sub in ("train_curves", "val_curves") for p in (out / sub).glob("*.csv")]:
        if stale.name not in wanted:  # a run dropped from the config leaves no curve in the plots
            stale.unlink()
    df = read_metrics_table(metrics_csv)
    # the splits the config evaluates now (a table written before `eval_splits` changed may hold more)
    planned = {s for r in runs for s in r.row_splits(config["eval_splits"])}
    df = df[(df["dataset"].astype(str) == dataset) & df["split"].isin(planned)]
    order = list(dict.fromkeys(r.name for r in runs))
    summary: dict[str, dict] = {name: {} for name in order if name in set(df["run"])}
    for split in dict.fromkeys(df["split"]):
        for rec in summary_over_seeds(df, split, order, METRICS).to_dict("records"):
            summary[rec["run"]][split] = {m: round(rec[f"{m}_mean"], 6) for m in METRICS}
            summary[rec["run"]]["seeds"] = rec["seeds"]
    # the per-run bars: test, or validation where no test split was evaluated
    split = "test" if "test" in set(df["split"]) else "val"
    rows = df[df["split"] == split]
    _write_csv(out / "runs.csv", [{"run": f"{r['run']}/seed{r['seed']}", **{m: r[m] for m in METRICS}}
                                  for r in rows.to_dict("records")], header=["run", *METRICS])
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
