"""The analysis behind a report, as data: every number, choice and verdict the figures and the
page show, computed once from the workflow config, the metrics table and the run folders.

It holds the paired comparisons with the baseline (Holm-adjusted within each split), the setting
of each swept method selected on validation MAP@R (never on test), the XML diagnostics, the
training logs and the runs the pictures show. Figures and page only read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from xbml.errors import XbmlError
from xbml.metric_names import RANK_METRICS, TESTED_METRICS
from xbml.reporting import convergence, regularizer_diagnostics
from xbml.reporting.results import METRICS, PRIMARY, SPLIT_LABELS, dataset_runs, read_logs, read_train_summary, run_folder, run_names
from xbml.reporting.statistics import EXPLORATORY_FAMILY, PRIMARY_FAMILY, PairedComparison, compare, holm_adjust
from xbml.reporting.tables import ALLOW_MISSING_HINT, Gap, per_seed, read_metrics_table, table_gaps
from xbml.workflow.plan import PrimaryComparison, Run, load_workflow_config, primary_comparisons

MAIN_METRICS = RANK_METRICS


@dataclass(frozen=True)
class Sweep:
    """One swept hyper-parameter of a method, and the other keys swept with it."""

    method: str
    key: str
    others: list[str]


@dataclass(frozen=True)
class PictureRuns:
    """The runs the pictures compare, at one seed they share; `problem` says why there is none."""

    reference: str
    contender: str | None
    seed: int | None
    problem: str = ""

    @property
    def shown(self) -> list[str]:
        return [self.reference] + ([self.contender] if self.contender else [])


@dataclass
class Analysis:
    config: dict
    config_path: Path
    metrics_csv: Path
    dataset: str
    df: pd.DataFrame
    runs: list[Run]
    order: list[str]  # runs of the table: planned ones in config order, then any others
    baseline: str
    results: Path
    splits: list[str]
    prepared: str | None
    device: str
    gaps: list[Gap]  # planned seeds without metrics, reported only with --allow-missing
    summaries: dict[tuple[str, int], dict]  # train_summary.json of each (run, seed), {} when absent
    primary: list[PrimaryComparison] = field(default_factory=list)  # declared before the run (report.primary)
    comparisons: list[PairedComparison] = field(default_factory=list)  # primary ones first
    selected: dict[str, str] = field(default_factory=dict)  # swept method -> run chosen on validation
    headline: list[tuple[str, str]] = field(default_factory=list)  # (run, how it was chosen) per method
    regularizers: list[regularizer_diagnostics.RunDiagnostics] = field(default_factory=list)  # per run x regulariser
    sweeps: list[Sweep] = field(default_factory=list)
    train_logs: pd.DataFrame = field(default_factory=pd.DataFrame)  # train_log.jsonl rows + run, seed
    val_logs: pd.DataFrame = field(default_factory=pd.DataFrame)  # val_log.jsonl rows + run, seed
    chance: dict[tuple[str, str], float] = field(default_factory=dict)  # (run, regulariser) -> chance level
    convergence: list[convergence.LastThird] = field(default_factory=list)  # validation gain, last third
    pictures: PictureRuns | None = None

    @property
    def report_cfg(self) -> dict:
        return self.config["report"]

    @property
    def confidence(self) -> float:
        return self.report_cfg["confidence"]

    @property
    def others(self) -> list[str]:
        return [r for r in self.order if r != self.baseline]

    @property
    def swept_methods(self) -> list[str]:
        return list(dict.fromkeys(r.method for r in self.runs if r.swept))

    def runs_named(self, name: str) -> list[Run]:
        return [r for r in self.runs if r.name == name]

    def method_of(self, name: str) -> str:
        runs = self.runs_named(name)
        return runs[0].method if runs else name

    def swept_values(self, name: str) -> str:
        for r in self.runs_named(name):
            return ", ".join(f"{k}={v}" for k, v in r.swept)
        return ""

    @property
    def fold_protocol(self) -> bool:
        """Whether the runs are fold models (mlrc_4fold): test is their concatenation."""
        return any(r.folds for r in self.runs)

    def split_label(self, split: str) -> str:
        label = SPLIT_LABELS.get(split, split)
        return f"{label}, fold models concatenated" if split == "test" and self.fold_protocol else label

    def summary(self, run: Run) -> dict:
        return self.summaries.get((run.name, run.seed), {})

    def values(self, run: str, split: str, metric: str = PRIMARY) -> pd.Series:
        """The metric's per-seed values; NaN (missing, named in the page's warning) left out."""
        return self.df[(self.df["run"] == run) & (self.df["split"] == split)][metric].dropna()

    def mean(self, run: str, split: str, metric: str = PRIMARY) -> float:
        part = self.values(run, split, metric)
        return float(part.mean()) if len(part) else math.nan

    def best_on_validation(self, names: list[str]) -> str | None:
        """The run of `names` with the highest mean validation MAP@R (the first of equals), or None
        without validation results: selection never looks at the test split."""
        scored = [(self.mean(n, "val"), -i, n) for i, n in enumerate(names)] if "val" in self.splits else []
        scored = [s for s in scored if not math.isnan(s[0])]
        return max(scored)[2] if scored else None

    @property
    def primary_results(self) -> list[PairedComparison]:
        """The declared comparisons that the metrics table could answer, in declaration order."""
        return [c for p in self.primary for c in [self.comparison(p.run, p.metric, p.split)] if c is not None]

    @property
    def exploratory(self) -> list[PairedComparison]:
        return [c for c in self.comparisons if not c.primary]

    def comparison(self, run: str, metric: str, split: str) -> PairedComparison | None:
        for c in self.comparisons:
            if (c.method, c.metric, c.split) == (run, metric, split):
                return c
        return None

    def folder(self, name: str, seed: int) -> Path:
        for r in self.runs_named(name):
            if r.seed == seed:
                return run_folder(self.results, r)
        return self.results / self.dataset / name / f"seed{seed}"

    def common_seed(self, names: list[str]) -> int:
        seeds = None
        for n in names:
            s = set(self.df[self.df["run"] == n]["seed"].astype(int))
            seeds = s if seeds is None else seeds & s
        if not seeds:
            raise XbmlError(f"runs {names} share no seed in the metrics table")
        return min(seeds)


def analyse(config_path, dataset, metrics_csv, results="results", prepared=None, device="cpu",
            allow_missing=False) -> Analysis:
    config = load_workflow_config(config_path)
    runs = dataset_runs(config, dataset)
    df = read_metrics_table(metrics_csv)
    df = df[df["dataset"].astype(str) == dataset].reset_index(drop=True)
    if df.empty:
        raise XbmlError(f"metrics table {metrics_csv} has no rows of dataset {dataset!r}")
    gaps = table_gaps(df, runs, config.get("eval_splits", ["val", "test"]))
    if gaps and not allow_missing:
        listed = "; ".join(str(g) for g in gaps[:5]) + (f"; and {len(gaps) - 5} more" if len(gaps) > 5 else "")
        raise XbmlError(f"metrics table {metrics_csv} lacks metrics of configured seeds ({listed}); train and "
                        f"evaluate them and rerun `python -m xbml aggregate`, or {ALLOW_MISSING_HINT}")
    planned = run_names(runs)
    present = set(df["run"])
    order = [r for r in planned if r in present] + sorted(present - set(planned))
    results = Path(results)
    summaries = {(r.name, r.seed): read_train_summary(run_folder(results, r)) for r in runs}
    a = Analysis(config, Path(config_path), Path(metrics_csv), dataset, df, runs, order, config["baseline"], results,
                 [s for s in SPLIT_LABELS if s in set(df["split"])], prepared, device, gaps, summaries)
    a.primary = primary_comparisons(config)
    a.comparisons = _comparisons(a)
    a.regularizers = _regularizer_runs(a)
    for method in a.swept_methods:
        best = a.best_on_validation([n for n in order if a.method_of(n) == method])
        if best is not None:
            a.selected[method] = best
    a.headline = _headline_runs(a)
    a.sweeps = _sweeps(a)
    a.train_logs, a.val_logs = _logs(a)
    a.convergence = convergence.last_third(a.val_logs, a.order)
    a.chance = _chance_levels(a)
    a.pictures = _picture_runs(a)
    return a


def _comparisons(a: Analysis) -> list[PairedComparison]:
    """Every (run x tested metric x split) against the baseline: the declared primary ones first
    (their own Holm family), then the exploratory ones (Holm within each split)."""
    if a.baseline not in a.order:
        return []
    declared = {(p.run, p.metric, p.split) for p in a.primary}
    cfg = a.report_cfg
    out = []
    for run in a.others:
        for split in a.splits:
            for metric in TESTED_METRICS:
                family = PRIMARY_FAMILY if (run, metric, split) in declared else EXPLORATORY_FAMILY
                c = compare(run, a.baseline, metric, split, per_seed(a.df, run, split, metric),
                            per_seed(a.df, a.baseline, split, metric), a.confidence, cfg["equivalence_margin"],
                            cfg["equivalence_test"], family)
                if c is not None:
                    out.append(c)
    out.sort(key=lambda c: not c.primary)  # stable: primary first, each group in plan order
    return holm_adjust(out)


def _regularizer_runs(a: Analysis) -> list[regularizer_diagnostics.RunDiagnostics]:
    """The diagnostics of every regulariser of every run, from the runs' summaries (what training
    wrote, never the configs re-read)."""
    out = []
    for name in a.order:
        runs = a.runs_named(name)
        if runs:
            out += regularizer_diagnostics.collect({r.seed: a.summary(r) for r in runs}, name)
    return out


def _headline_runs(a: Analysis) -> list[tuple[str, str]]:
    """(run, how it was chosen) per non-baseline method: the run itself, or the swept setting
    selected on validation MAP@R."""
    out = []
    for method in dict.fromkeys(a.method_of(r) for r in a.others):
        settings = [n for n in a.others if a.method_of(n) == method]
        if method in a.selected:
            out.append((a.selected[method], "setting selected on validation MAP@R"))
        elif len(settings) == 1:
            out.append((settings[0], ""))
        else:
            out.extend((s, "no validation split: every setting listed") for s in settings)
    return out


def _sweeps(a: Analysis) -> list[Sweep]:
    """The swept keys that have values in the metrics table (Run.swept, never the run names)."""
    out = []
    for method in a.swept_methods:
        keys = list(dict.fromkeys(k for r in a.runs if r.method == method for k, _ in r.swept))
        for key in keys:
            if key in a.df.columns and a.df[a.df["method"] == method][key].notna().any():
                out.append(Sweep(method, key, [k for k in keys if k != key]))
    return out


def _logs(a: Analysis) -> tuple[pd.DataFrame, pd.DataFrame]:
    train_rows, val_rows = [], []
    for run in a.runs:
        if run.name not in a.order:
            continue
        t, v = read_logs(run_folder(a.results, run))
        train_rows += [{**r, "run": run.name, "seed": run.seed} for r in t]
        val_rows += [{**r, "run": run.name, "seed": run.seed} for r in v]
    return pd.DataFrame(train_rows), pd.DataFrame(val_rows)


def _chance_levels(a: Analysis) -> dict[tuple[str, str], float]:
    """(run, regulariser) -> chance level: logged as <name>_chance, else the summaries'
    chance_loss; absent where none is defined."""
    logs = a.train_logs
    out = {}
    for diag in a.regularizers:
        column = f"{diag.name}_chance"
        logged = logs[logs["run"] == diag.run][column].dropna() if column in logs else pd.Series([], dtype=float)
        summarised = diag.values("chance_loss")
        if len(logged):
            out[diag.run, diag.name] = float(logged.median())
        elif summarised:
            out[diag.run, diag.name] = summarised[0]
    return out


def _picture_runs(a: Analysis) -> PictureRuns:
    """The baseline and the non-baseline run with the best validation MAP@R (the first other one
    without a validation split), at the smallest seed they share."""
    reference = a.baseline if a.baseline in a.order else a.order[0]
    others = [r for r in a.order if r != reference]
    contender = (a.best_on_validation(others) or others[0]) if others else None
    shown = [reference] + ([contender] if contender else [])
    try:
        return PictureRuns(reference, contender, a.common_seed(shown))
    except XbmlError as exc:
        return PictureRuns(reference, contender, None, str(exc))
