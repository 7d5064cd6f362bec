"""The report of one dataset: tables, paired statistics, figures, pictures and environment,
as reports/{dataset}/index.html (self-contained) with the PNGs, the metrics table and
comparisons.csv (every paired comparison, machine-readable) beside it."""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from xbml.atomic import write_text
from xbml.errors import XbmlError
from xbml.reporting import environment, html, xml_diagnostics
from xbml.reporting.figures import XML_LOSS_FIGURE, figure_names, runs_xml
from xbml.reporting.html import Cell, Section, esc
from xbml.reporting.results import (
    METRIC_LABELS,
    METRICS,
    PRIMARY,
    dataset_runs,
    read_logs,
    read_train_summary,
    run_folder,
    run_names,
)
from xbml.reporting.statistics import (
    BETTER,
    CORRECTION_NAME,
    INTERVAL_NAME,
    TEST_NAME,
    WORSE,
    PairedComparison,
    compare,
    describe,
    floor_note,
    holm_adjust,
    smallest_p,
)
from xbml.reporting.tables import ALLOW_MISSING_HINT, Gap, per_seed, read_metrics_table, summary_over_seeds, table_gaps
from xbml.workflow.plan import Run, load_workflow_config

MAIN_METRICS = ("map_at_r", "r_precision", "precision_at_1")
COMPARISON_COLUMNS = ("run", "split", "metric", "n_seeds", "mean_diff", "ci_low", "ci_high", "p_value", "p_adjusted",
                      "verdict")


@dataclass
class Figure:
    name: str
    png: bytes
    alt: str
    caption: str  # HTML
    drawn: bool = True  # False: a placeholder that says why the figure is missing
    message: str = ""


@dataclass
class Context:
    config: dict
    dataset: str
    df: pd.DataFrame
    runs: list[Run]
    order: list[str]
    baseline: str
    results: Path
    splits: list[str]
    prepared: str | None
    device: str
    gaps: list[Gap]  # planned seeds without metrics, reported only with --allow-missing
    comparisons: list[PairedComparison] = field(default_factory=list)
    selected: dict[str, str] = field(default_factory=dict)  # swept method -> run chosen on validation
    xml: list[xml_diagnostics.RunDiagnostics] = field(default_factory=list)  # XML runs, in run order
    _summaries: dict[tuple[str, int], dict] = field(default_factory=dict)

    @property
    def report_cfg(self) -> dict:
        return self.config["report"]

    @property
    def others(self) -> list[str]:
        return [r for r in self.order if r != self.baseline]

    def runs_named(self, name: str) -> list[Run]:
        return [r for r in self.runs if r.name == name]

    def method_of(self, name: str) -> str:
        runs = self.runs_named(name)
        return runs[0].method if runs else name

    def summary(self, run: Run) -> dict:
        """train_summary.json of a run ({} when absent), read once."""
        key = (run.name, run.seed)
        if key not in self._summaries:
            self._summaries[key] = read_train_summary(run_folder(self.results, run))
        return self._summaries[key]

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

    def comparison(self, run: str, metric: str, split: str) -> PairedComparison | None:
        for c in self.comparisons:
            if (c.method, c.metric, c.split) == (run, metric, split):
                return c
        return None


# -- analysis -----------------------------------------------------------------------------------
def _context(config_path, dataset, metrics_csv, results, prepared, device, allow_missing=False) -> Context:
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
    splits = [s for s in ("test", "val") if s in set(df["split"])]
    ctx = Context(config, dataset, df, runs, order, config["baseline"], Path(results), splits, prepared, device, gaps)
    ctx.comparisons = _comparisons(ctx)
    ctx.xml = _xml_runs(ctx)
    for method in dict.fromkeys(r.method for r in runs if r.swept):
        best = ctx.best_on_validation([n for n in order if ctx.method_of(n) == method])
        if best is not None:
            ctx.selected[method] = best
    return ctx


def _comparisons(ctx: Context) -> list[PairedComparison]:
    """Every (run x metric x split) against the baseline, Holm-adjusted within each split."""
    if ctx.baseline not in ctx.order:
        return []
    out = []
    for run in ctx.others:
        for split in ctx.splits:
            for metric, _ in METRICS:
                c = compare(run, ctx.baseline, metric, split, per_seed(ctx.df, run, split, metric),
                            per_seed(ctx.df, ctx.baseline, split, metric), ctx.report_cfg["confidence"])
                if c is not None:
                    out.append(c)
    return holm_adjust(out)


def _xml_runs(ctx: Context) -> list[xml_diagnostics.RunDiagnostics]:
    """The diagnostics of every run that trains with XML (by its summaries or, for summaries that
    predate them, by its config)."""
    out = []
    for name in ctx.order:
        runs = ctx.runs_named(name)
        if not runs:
            continue
        diag = xml_diagnostics.collect({r.seed: ctx.summary(r) for r in runs}, name, runs_xml(ctx.config, runs[0]))
        if diag is not None:
            out.append(diag)
    return out


def _headline_runs(ctx: Context) -> list[tuple[str, str]]:
    """(run, how it was chosen) per non-baseline method: the run itself, or the swept setting
    selected on validation MAP@R."""
    out = []
    for method in dict.fromkeys(ctx.method_of(r) for r in ctx.others):
        settings = [n for n in ctx.others if ctx.method_of(n) == method]
        if method in ctx.selected:
            out.append((ctx.selected[method], "setting selected on validation MAP@R"))
        elif len(settings) == 1:
            out.append((settings[0], ""))
        else:
            out.extend((s, "no validation split: every setting listed") for s in settings)
    return out


def picture_runs(ctx: Context) -> tuple[str, str | None]:
    """(reference run, contender) for the pictures: the baseline and the non-baseline run with the
    best validation MAP@R (first one without a validation split)."""
    reference = ctx.baseline if ctx.baseline in ctx.order else ctx.order[0]
    others = [r for r in ctx.order if r != reference]
    if not others:
        return reference, None
    return reference, ctx.best_on_validation(others) or others[0]


def _common_seed(ctx: Context, names: list[str]) -> int:
    seeds = None
    for n in names:
        s = set(ctx.df[ctx.df["run"] == n]["seed"].astype(int))
        seeds = s if seeds is None else seeds & s
    if not seeds:
        raise XbmlError(f"runs {names} share no seed in the metrics table")
    return min(seeds)


def _folder(ctx: Context, name: str, seed: int) -> Path:
    for r in ctx.runs_named(name):
        if r.seed == seed:
            return run_folder(ctx.results, r)
    return ctx.results / ctx.dataset / name / f"seed{seed}"


# -- figures --------------------------------------------------------------------------------------
def _make_figures(ctx: Context) -> dict[str, Figure]:
    from xbml.reporting import plots

    names = figure_names(ctx.config, ctx.dataset)
    palette = plots.run_palette(ctx.order, ctx.baseline)
    figures: dict[str, Figure] = {}

    def add(name, fig, alt, caption):
        figures[name] = Figure(name, plots.png_bytes(fig), alt, caption)

    def skip(name, title, message):
        figures[name] = Figure(name, plots.png_bytes(plots.message_figure(title, message)), title, "", False, message)

    conf = round(ctx.report_cfg["confidence"] * 100)
    for split in ("test", "val"):
        name = f"metrics_{split}.png"
        if name not in names:
            continue
        if split not in ctx.splits:
            skip(name, f"metrics on the {split} split", f"the metrics table has no {split} rows")
            continue
        add(name, plots.metrics_figure(ctx.df, split, ctx.order, palette, ctx.dataset),
            f"retrieval metrics per run on the {split} split",
            f"Every retrieval metric on the {esc(plots._split_words(split))}: diamond and bar = mean "
            "&plusmn; 1 standard deviation over seeds, black dots = individual seeds. All metrics are "
            "fractions in [0, 1]; MAP@R is the primary one.")
    if "paired_differences.png" in names:
        rows = [c for c in ctx.comparisons if c.metric in MAIN_METRICS]
        if rows:
            add("paired_differences.png", plots.differences_figure(rows, ctx.order, palette, ctx.dataset),
                "paired differences to the baseline",
                f"Per-seed difference to <b>{esc(ctx.baseline)}</b> trained with the same seed (same batches and "
                f"initial weights); diamond = mean difference, bar = {conf}% t interval of the mean over seeds, "
                "dots = seeds. An interval that crosses the dashed zero line is not significant; one that does not "
                f"is significant only if the {CORRECTION_NAME}-adjusted {TEST_NAME} p is below "
                f"{1 - ctx.report_cfg['confidence']:.2g} too (verdicts in the table above).")
        else:
            skip("paired_differences.png", "paired differences",
                 f"no run shares a seed with the baseline {ctx.baseline!r}")
    if "sweeps.png" in names:
        sweeps = []
        for method in dict.fromkeys(r.method for r in ctx.runs if r.swept):
            keys = list(dict.fromkeys(k for r in ctx.runs if r.method == method for k, _ in r.swept))
            for key in keys:
                if key in ctx.df.columns and ctx.df[ctx.df["method"] == method][key].notna().any():
                    sweeps.append((method, key, [k for k in keys if k != key]))
        if sweeps:
            add("sweeps.png", plots.sweep_figure(ctx.df, sweeps, ctx.baseline, ctx.selected, ctx.report_cfg["confidence"],
                                                 ctx.dataset),
                "MAP@R against swept hyper-parameters",
                f"MAP@R against each swept value; line = mean over seeds, band = {conf}% t interval of the mean "
                f"over seeds, dots = seeds, dashed line and grey band = {esc(ctx.baseline)} mean &plusmn; 1 sd. "
                "The star marks the setting selected on <b>validation</b> MAP@R; its test value is reported "
                "separately and was not used to choose it.")
        else:
            skip("sweeps.png", "sweeps", "the metrics table has no swept settings")
    _curve_figures(ctx, names, palette, add, skip)
    _picture_figures(ctx, names, add, skip)
    return figures


def _curve_figures(ctx, names, palette, add, skip) -> None:
    from xbml.reporting import plots

    train_rows, val_rows = [], []
    for run in ctx.runs:
        if run.name not in ctx.order:
            continue
        folder = run_folder(ctx.results, run)
        t, v = read_logs(folder)
        train_rows += [{**r, "run": run.name, "seed": run.seed} for r in t]
        val_rows += [{**r, "run": run.name, "seed": run.seed} for r in v]
    if train_rows:
        add("training_curves.png", plots.training_curves_figure(pd.DataFrame(train_rows), ctx.order, palette, ctx.dataset),
            "training loss curves",
            "Every logged loss term over training iterations: <code>loss</code> is the optimised total "
            "(1 &minus; w)&middot;base + w&middot;XML, <code>loss_base</code> the base metric-learning loss and "
            "<code>loss_xml</code> the cross-batch prediction loss (XML runs only). Line = mean over seeds of a "
            "rolling mean, band = &plusmn; 1 sd over seeds.")
    else:
        skip("training_curves.png", "training curves", "no train_log.jsonl was found in the run folders")
    if val_rows and PRIMARY in pd.DataFrame(val_rows).columns:
        add("validation_curves.png", plots.validation_curves_figure(pd.DataFrame(val_rows), ctx.order, palette, ctx.dataset),
            "validation MAP@R during training",
            "MAP@R on the validation classes at every evaluation during training (line = mean over seeds, "
            "band = &plusmn; 1 sd). The model of each run is the one at its best validation iteration.")
    else:
        skip("validation_curves.png", "validation curves",
             "no validation log: the dataset has no validation classes (val_fraction = 0)")
    if XML_LOSS_FIGURE in names:
        _xml_loss_figure(ctx, train_rows, palette, add, skip)


def _chance_levels(ctx: Context, logs: pd.DataFrame) -> dict[str, float]:
    """ln C per XML run: logged as xml_chance, else the summaries' chance_loss; absent when unknown."""
    out = {}
    for diag in ctx.xml:
        logged = logs[logs["run"] == diag.run]["xml_chance"].dropna() if "xml_chance" in logs else pd.Series([])
        summarised = diag.values("chance_loss")
        if len(logged):
            out[diag.run] = float(logged.median())
        elif summarised:
            out[diag.run] = summarised[0]
    return out


def _xml_loss_figure(ctx: Context, train_rows: list[dict], palette, add, skip) -> None:
    from xbml.reporting import plots

    xml_runs = {d.run for d in ctx.xml}
    logs = pd.DataFrame([r for r in train_rows if r["run"] in xml_runs and r.get("loss_xml") is not None])
    if logs.empty:
        skip(XML_LOSS_FIGURE, "XML prediction loss", "no loss_xml in the train_log.jsonl of the XML runs")
        return
    chance = _chance_levels(ctx, logs)
    no_chance = sorted(xml_runs & set(logs["run"]) - set(chance))
    add(XML_LOSS_FIGURE, plots.xml_loss_figure(logs, ctx.order, palette, chance, ctx.dataset),
        "XML prediction loss against chance",
        "The cross-batch prediction loss <code>loss_xml</code> of every XML run over training iterations: thin "
        "lines = single seeds, thick line = mean over seeds (both a rolling mean); dashed line = chance, "
        "ln&nbsp;C, the loss of a uniform guess over the C training classes. A curve that stays on the chance "
        "line means the regulariser predicted nothing and had no effect."
        + (f" No chance level is known for {esc(', '.join(no_chance))} (its prediction loss is not a softmax "
           "over classes, or it was not recorded)." if no_chance else ""))


def _picture_figures(ctx: Context, names, add, skip) -> None:
    wanted = [n for n in ("retrieval.png", "tsne.png", "prototype_maps.png", "prototype_usage.png") if n in names]
    if not wanted:
        return
    if "test" not in ctx.splits:
        for n in wanted:
            skip(n, n.removesuffix(".png"), "the metrics table has no test split")
        return
    from xbml.reporting import pictures

    reference, contender = picture_runs(ctx)
    shown = [reference] + ([contender] if contender else [])
    try:
        seed = _common_seed(ctx, shown)
        folders = {n: _folder(ctx, n, seed) for n in shown}
        embs = {n: pictures.load_embeddings(folders[n] / "embeddings_test.npz") for n in shown}
        if contender and not pictures.aligned(embs[reference], embs[contender]):
            raise XbmlError(f"the test embeddings of {reference} and {contender} list different images")
        import torch

        blob = torch.load(folders[reference] / "model.pt", map_location="cpu", weights_only=True)
        images = pictures.DisplayImages(blob["config"]["data"], ctx.prepared)
    except (XbmlError, FileNotFoundError, OSError) as exc:
        for n in wanted:
            skip(n, n.removesuffix(".png"), f"cannot draw: {exc}")
        return
    why = f"seed {seed}" + (f"; {contender} has the best validation MAP@R among the other runs" if contender and "val" in ctx.splits else "")
    rc = ctx.report_cfg
    if "retrieval.png" in wanted:
        e = embs[reference]
        if rc["retrieval_queries"] == 0:
            skip("retrieval.png", "retrieval examples", "disabled (report.retrieval_queries = 0)")
        else:
            cand = pictures.candidate_queries(e)
            panels, hits = [], []
            for n in shown:
                idx, score = pictures.nearest_neighbours(embs[n], cand, rc["retrieval_k"])
                panels.append((f"{n} (seed {seed})", embs[n], idx, score))
                hits.append(embs[n].labels[idx] == embs[n].labels[cand][:, None])
            chosen = pictures.choose_queries(hits, rc["retrieval_queries"])
            protocol = "query vs gallery" if e.query is not None else "query = reference set minus the query"
            add("retrieval.png",
                pictures.retrieval_figure(panels, chosen, cand, images,
                                          f"{ctx.dataset}: top-{rc['retrieval_k']} neighbours of test queries ({protocol})"),
                "retrieval examples",
                f"Queries from the unseen test classes and their {rc['retrieval_k']} nearest neighbours by cosine "
                f"similarity ({esc(protocol)}); green frame = same class as the query, red = another class. "
                + (f"Left <b>{esc(reference)}</b>, right <b>{esc(contender)}</b> ({esc(why)}), the same queries: "
                   "those where their precision among the shown neighbours differs most, then random ones "
                   "(fixed RNG seed)." if contender else f"Run <b>{esc(reference)}</b>, {esc(why)}; random queries "
                   "(fixed RNG seed)."))
    if "tsne.png" in wanted:
        if rc["tsne_classes"] == 0:
            skip("tsne.png", "t-SNE", "disabled (report.tsne_classes = 0)")
        else:
            classes = pictures.tsne_classes(embs[reference].labels, rc["tsne_classes"])
            panels = []
            for n in shown:
                e = embs[n]
                m = np.isin(e.labels, classes)
                panels.append((f"{n} (seed {seed}, test MAP@R {ctx.mean(n, 'test'):.3f})",
                               pictures.tsne_2d(e.embeddings[m]), e.labels[m]))
            add("tsne.png", pictures.tsne_figure(panels, f"{ctx.dataset}: t-SNE of test embeddings ({len(classes)} classes)"),
                "t-SNE of test embeddings",
                f"2-D t-SNE (scikit-learn, PCA initialisation, random_state 0) of the test embeddings of "
                f"{len(classes)} unseen classes (chosen with a fixed RNG seed), coloured by class; {esc(why)}. "
                "t-SNE keeps neighbourhoods, not distances between clusters: read compactness and mixing, not positions.")
    _prototype_figures(ctx, wanted, shown, seed, embs, images, add, skip)


def _prototype_figures(ctx, wanted, shown, seed, embs, images, add, skip) -> None:
    proto = [n for n in ("prototype_maps.png", "prototype_usage.png") if n in wanted]
    if not proto:
        return
    import torch

    from xbml.inference import load_trained_model
    from xbml.reporting import pictures

    candidates = list(reversed(shown)) + [r for r in ctx.order if r not in shown]
    chosen = None
    for name in candidates:
        try:
            s = seed if name in shown else _common_seed(ctx, [name])
        except XbmlError:
            continue
        path = _folder(ctx, name, s) / "model.pt"
        if not path.exists():
            continue
        model, blob = load_trained_model(path)
        if blob.get("xml_state"):
            chosen = (name, s, model, blob)
            break
    if chosen is None:
        for n in proto:
            skip(n, n.removesuffix(".png"), "no run of this report has XML prototypes (xml_state) in its model.pt")
        return
    name, s, model, blob = chosen
    e = embs.get(name) or pictures.load_embeddings(_folder(ctx, name, s) / "embeddings_test.npz")
    rng = np.random.default_rng(pictures.PICTURE_SEED)
    pick = np.sort(rng.choice(len(e.rows), size=min(192, len(e.rows)), replace=False))
    batch = torch.stack([images.tensor(e.rows[i]) for i in pick])
    assign = pictures.compute_assignments(model, blob["xml_state"], blob["config"]["xml"], batch, ctx.device)
    shown_imgs = [images.to_display(x) for x in batch]
    labels = e.labels[pick]
    K, (h, w) = assign.shape[1], assign.shape[2:]
    if "prototype_maps.png" in proto:
        first, seen = [], set()
        for i, c in enumerate(labels):
            if c not in seen:
                seen.add(c)
                first.append(i)
            if len(first) == 8:
                break
        add("prototype_maps.png",
            pictures.prototype_map_figure([shown_imgs[i] for i in first], [labels[i] for i in first], assign[first],
                                          f"{ctx.dataset}: prototype assignments of {name} (seed {s}), K = {K}"),
            "prototype assignment maps",
            f"Test images of different classes; middle row: for each of the {h}&times;{w} feature-map locations, the "
            f"prototype it is assigned to most (argmax of a_i = softmax(s&middot;cos(x_i, w_k)), s = "
            f"{blob['config']['xml']['assignment_scale']:g}), overlaid in that prototype's colour; bottom row: the "
            f"assignment weight of that prototype (1 = one prototype explains the location). Run <b>{esc(name)}</b>, "
            f"seed {s}, prototypes of its last iteration.")
    if "prototype_usage.png" in proto:
        add("prototype_usage.png",
            pictures.prototype_usage_figure(shown_imgs, assign,
                                            f"{ctx.dataset}: prototype usage of {name} (seed {s})"),
            "prototype usage",
            f"Top: share of all feature-map locations of {len(pick)} test images (fixed RNG seed) assigned to each "
            "prototype, i.e. the mean histogram &pi;. Below: for the prototypes whose share varies most between "
            "images (they tell images apart), the images with the largest share, with that prototype's assignment "
            "weights overlaid.")


# -- page -----------------------------------------------------------------------------------------
def _swept_values(ctx: Context, name: str) -> str:
    for r in ctx.runs_named(name):
        return ", ".join(f"{k}={v}" for k, v in r.swept)
    return ""


def _summary_table(ctx: Context, split: str) -> str:
    summary = summary_over_seeds(ctx.df, split, ctx.order)
    best = {m: summary[f"{m}_mean"].max() for m, _ in METRICS}
    headers = ["run", "method", "swept", "seeds", *(label for _, label in METRICS)]
    rows = []
    for _, rec in summary.iterrows():
        row = [rec["run"], rec["method"], _swept_values(ctx, rec["run"]) or "\u2013", Cell(str(rec["seeds"]), numeric=True)]
        for m, _ in METRICS:
            mean, std = float(rec[f"{m}_mean"]), float(rec[f"{m}_std"])
            row.append(Cell(html.mean_std(mean, std), numeric=True, classes=("best",) if mean == best[m] and len(summary) > 1 else (),
                            attrs={"data-run": rec["run"], "data-metric": m, "data-split": split,
                                   "data-mean": repr(mean), "data-std": repr(std)}))
        rows.append(row)
    return html.table(headers, rows, table_id=f"summary-{split}")


def _comparison_table(ctx: Context, split: str, metrics) -> str:
    seeds = sorted({s for c in ctx.comparisons if c.split == split for s in c.seeds})
    level = round(ctx.report_cfg["confidence"] * 100)
    headers = ["run", "metric", *(f"\u0394 seed {s}" for s in seeds), "mean \u0394", f"{level}% {INTERVAL_NAME}",
               f"{TEST_NAME} p", f"{CORRECTION_NAME}-adjusted p", "verdict"]
    rows = []
    for run in ctx.others:
        for metric in metrics:
            c = ctx.comparison(run, metric, split)
            if c is None:
                continue
            by_seed = dict(zip(c.seeds, c.differences))
            rows.append([
                run, METRIC_LABELS[metric],
                *(Cell(f"{by_seed[s]:+.4f}" if s in by_seed else "\u2013", numeric=True) for s in seeds),
                Cell(f"{c.mean:+.4f}", numeric=True, attrs={"data-run": run, "data-metric": metric, "data-split": split,
                                                             "data-mean": repr(c.mean)}),
                Cell(f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]" if c.n > 1 else "n/a", numeric=True,
                     attrs={"data-low": repr(c.ci_low), "data-high": repr(c.ci_high)}),
                Cell(html.fmt(c.p_value, 3), numeric=True),
                Cell(html.fmt(c.p_adjusted, 3), numeric=True),
                Cell(c.verdict, classes=_verdict_classes(c)),
            ])
    return html.table(headers, rows, table_id=f"comparison-{split}")


def _verdict_classes(c: PairedComparison) -> tuple[str, ...]:
    return (c.verdict,) if c.verdict in (BETTER, WORSE) else ()


def _finding(c: PairedComparison, how: str) -> str:
    text = describe(c, f"{'test ' if c.split == 'test' else 'validation '}{METRIC_LABELS[c.metric]}")
    if how:
        text = f"{how[0].upper()}{how[1:]}: {text}"
    classes = _verdict_classes(c)
    cls = f' class="{classes[0]}"' if classes else ""
    attrs = (f'data-run="{esc(c.method)}" data-metric="{c.metric}" data-split="{c.split}" data-mean="{c.mean!r}" '
             f'data-low="{c.ci_low!r}" data-high="{c.ci_high!r}" data-verdict="{esc(c.verdict)}"')
    return f'<li {attrs}><span{cls}>{esc(text)}</span></li>'


def _split_limits(ctx: Context, split: str) -> str:
    """What the seeds of one split can show: the exact test's floor, Holm's floor, the resolution."""
    comps = [c for c in ctx.comparisons if c.split == split]
    tested = [c for c in comps if c.n >= 2]
    name = "Test" if split == "test" else "Validation"
    if not tested:
        return f"{name}: one seed per comparison, no test is possible."
    alpha = tested[0].alpha
    ns = sorted({c.n for c in tested})
    n = ns[0]  # the fewest seeds bound what the split can show
    m = tested[0].family_size
    seeds = f"{n}" if len(ns) == 1 else f"{ns[0]}\u2013{ns[-1]}"
    text = f"{name}: {m} tests ({len(ctx.others)} run(s) \u00d7 metrics) share one {CORRECTION_NAME} correction; "
    limit = floor_note(n, m, alpha)
    if limit:
        text += f"{limit}, however large the difference."
    else:
        text += (f"with {seeds} seeds the smallest p the exact test can give is 2/2^{n} = {smallest_p(n):.3g} "
                 f"(Holm's smallest adjusted p {min(1.0, m * smallest_p(n)):.3g}), so a consistent difference can "
                 "be significant.")
    primary = [c for c in tested if c.metric == PRIMARY]
    if primary:
        lo, hi = min(c.half_width for c in primary), max(c.half_width for c in primary)
        width = f"\u00b1{lo:.4f}" if lo == hi else f"\u00b1{lo:.4f} to \u00b1{hi:.4f}"
        text += (f" The smallest MAP@R difference these seeds resolve is {width} (half-width of the "
                 f"{round(tested[0].confidence * 100)}% t interval, from the observed seed-to-seed sd of the paired "
                 "differences): a smaller mean difference cannot give an interval that excludes 0.")
    return text


def _stats_note(ctx: Context) -> str:
    level = round(ctx.report_cfg["confidence"] * 100)
    alpha = f"{1 - ctx.report_cfg['confidence']:.2g}"
    limits = "".join(f"<li>{esc(_split_limits(ctx, split))}</li>" for split in ctx.splits)
    return (
        f'<div class="note stats-note"><p>Statistics: per-seed differences (method &minus; baseline, same seed = '
        f"same batches and initial weights); their mean; a {level}% t interval of the mean (mean &plusmn; "
        f"t &middot; sd/&radic;n); an exact two-sided sign-flip permutation test (all 2<sup>n</sup> sign assignments "
        f"of the differences, no distribution assumed); {CORRECTION_NAME}'s step-down correction over every run "
        f"&times; metric test of the same split (test and validation are separate families). A run is called "
        f"<b>better</b> or <b>worse</b> only when the adjusted p &lt; {alpha} <b>and</b> the interval excludes 0; "
        f"everything else is <b>not significant</b>, which means these seeds cannot tell the difference from seed "
        f"noise, not that there is none. Every number is in <code>comparisons.csv</code>.</p>"
        f'<ul class="limits">{limits}</ul></div>'
    )


def _figure_html(figures: dict[str, Figure], name: str) -> str:
    f = figures.get(name)
    if f is None:
        return ""
    if not f.drawn:
        return f'<p class="note">Figure <code>{esc(name)}</code> not drawn: {esc(f.message)}.</p>'
    return html.figure(name, f.png, f.alt, f.caption)


def _sweep_html(ctx: Context, sec: Section) -> None:
    for method in dict.fromkeys(r.method for r in ctx.runs if r.swept):
        settings = [n for n in ctx.order if ctx.method_of(n) == method]
        if not settings:
            continue
        sec.add(f"<h3>{esc(method)}</h3>")
        headers = ["setting", "swept values", "seeds", "validation MAP@R", "test MAP@R", ""]
        rows, classes = [], []
        for n in settings:
            cells = []
            for split in ("val", "test"):
                part = ctx.values(n, split)
                std = float(part.std(ddof=1)) if len(part) > 1 else math.nan
                cells.append(Cell(html.mean_std(float(part.mean()), std) if len(part) else "\u2013", numeric=True))
            seeds = ctx.df[ctx.df["run"] == n]["seed"].nunique()
            mark = "selected on validation" if ctx.selected.get(method) == n else ""
            rows.append([n, _swept_values(ctx, n), Cell(str(seeds), numeric=True), *cells, mark])
            classes.append("selected" if mark else "")
        sec.add(html.table(headers, rows, table_id=f"sweep-{method}", row_classes=classes))
        best = ctx.selected.get(method)
        if best is None:
            sec.add('<p class="note">No validation split in the metrics table: no setting is selected (choosing by '
                    "test MAP@R would select on the test set).</p>")
            continue
        part = ctx.values(best, "test")
        std = float(part.std(ddof=1)) if len(part) > 1 else math.nan
        text = (f"Selected on validation MAP@R: <b>{esc(_swept_values(ctx, best))}</b> (validation MAP@R "
                f"{ctx.mean(best, 'val'):.4f}). <b>Test result of the selected setting</b>, reported separately and "
                f"not used for the choice: MAP@R {html.mean_std(float(part.mean()), std)} over {len(part)} seeds.")
        c = ctx.comparison(best, PRIMARY, "test")
        if c is not None:
            text += " " + esc(describe(c, "test MAP@R"))
        sec.add(f'<p class="selected-setting" data-method="{esc(method)}" data-run="{esc(best)}">{text}</p>')


def _environment_html(ctx: Context, config_path) -> Section:
    sec = Section("environment", "Environment and provenance")
    version = environment.data_version(ctx.results, ctx.dataset)
    dvc = environment.dvc_hash(version)
    sec.add("<h3>Data</h3>")
    if version is None:
        sec.add(f'<p class="note">No {esc(ctx.results / ctx.dataset / "data_version.json")}: the dataset version is '
                "unknown (run the workflow's version step).</p>")
    else:
        sec.add(f'<p>Dataset DVC hash: <code id="dvc-hash">{esc(dvc or "not versioned with DVC")}</code></p>')
        sec.add(html.table(["key", "value"], [[k, v] for k, v in version.items()], table_id="data-version"))
    git = environment.git_state()
    sec.add("<h3>Code</h3>")
    if git["commit"]:
        state = "dirty: uncommitted changes to tracked files" if git["dirty"] else "clean"
        sec.add(f'<p>Commit <code id="git-commit">{esc(git["commit"])}</code> ({state}).</p>')
    else:
        sec.add(f'<p class="note">Code commit unknown ({esc(git["note"])}).</p>')
    sec.add("<h3>Workflow configuration</h3>")
    sec.add(f"<p>File <code>{esc(config_path)}</code>; baseline <b>{esc(ctx.baseline)}</b>; seeds "
            f"{esc(', '.join(str(s) for s in ctx.config['seeds']))}.</p>")
    sec.add(f"<pre>{esc(yaml.safe_dump(ctx.config, sort_keys=False))}</pre>")
    devices: Counter = Counter()
    for run in ctx.runs:
        s = ctx.summary(run)
        if s:
            devices[(s.get("device"), s.get("bf16"), s.get("threads"), s.get("world_size"))] += 1
    sec.add("<h3>Devices and libraries</h3>")
    if devices:
        sec.add(html.table(["training device", "bf16", "threads", "processes", "runs"],
                           [[d, b, t, w, Cell(str(n), numeric=True)] for (d, b, t, w), n in devices.items()],
                           table_id="devices"))
    sec.add(html.table(["report machine", ""], [[k, v] for k, v in environment.machine().items()]))
    sec.add(html.table(["library", "version"], [[k, v] for k, v in environment.library_versions().items()],
                       table_id="libraries"))
    sec.add("<h3>Cost of each stage</h3>")
    bench = environment.benchmarks(ctx.results, ctx.dataset)
    if bench.empty:
        sec.add('<p class="note">No Snakemake benchmark files (results/&lt;dataset&gt;/benchmarks/): the stages were '
                "run by hand.</p>")
    else:
        rows = []
        for rule, g in bench.groupby("rule", sort=False):
            rows.append([rule, Cell(str(len(g)), numeric=True), Cell(environment.hms(g["wall_s"].sum()), numeric=True),
                         Cell(environment.hms(g["wall_s"].max()), numeric=True),
                         Cell(f"{g['max_rss_mb'].max():.0f}", numeric=True)])
        sec.add(html.table(["rule", "jobs", "total wall time (h:m:s)", "longest job (h:m:s)", "max RSS (MB)"], rows,
                           table_id="benchmarks"))
        detail = html.table(["rule", "job", "wall time (s)", "max RSS (MB)", "CPU time (s)"],
                            [[r.rule, r.job, Cell(f"{r.wall_s:.1f}", numeric=True), Cell(f"{r.max_rss_mb:.0f}", numeric=True),
                              Cell(html.fmt(r.cpu_s, 1), numeric=True)] for r in bench.itertuples()])
        sec.add(f"<details><summary>every job</summary>{detail}</details>")
    return sec


def _csv_table(metrics_csv: Path) -> str:
    with open(metrics_csv, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return ""
    return html.table(rows[0], [[Cell(v, numeric=_is_number(v)) for v in r] for r in rows[1:]], table_id="metrics-csv")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _xml_sentences_html(ctx: Context) -> str:
    if not ctx.xml:
        return ""
    items = "".join(f'<li data-run="{esc(d.run)}">{esc(xml_diagnostics.sentence(d))}</li>' for d in ctx.xml)
    return f'<p>Did the XML regulariser learn?</p><ul class="xml-diagnostics" id="xml-diagnostics">{items}</ul>'


def _xml_section(ctx: Context, figures: dict[str, Figure]) -> Section:
    sec = Section("xml", "XML regulariser diagnostics")
    sec.add(_figure_html(figures, XML_LOSS_FIGURE))
    rows = [row for d in ctx.xml for row in xml_diagnostics.seed_rows(d)]
    if rows:
        def num(value, digits=3):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return Cell(html.fmt(float(value), digits) if ok else xml_diagnostics.NOT_RECORDED if value is None
                        else str(value), numeric=ok)

        table = [[r["run"], Cell(str(r["seed"]), numeric=True), r["prediction_loss"] or xml_diagnostics.NOT_RECORDED,
                  num(r["num_classes"], 0), num(r["chance_loss"]), num(r["final_loss_xml"]), num(r["ratio_to_chance"]),
                  ("n/a" if r["recorded"] else xml_diagnostics.NOT_RECORDED) if r["learned"] is None
                  else "yes" if r["learned"] else "no",
                  num(r["final_assign_entropy"]), num(r["max_entropy"]), num(r["final_effective_prototypes"], 1),
                  num(r["num_prototypes"], 0)] for r in rows]
        sec.add(html.table(["run", "seed", "prediction loss", "classes C", "chance ln C", "final loss_xml",
                            "ratio to chance", "learned", "assignment entropy (nats)", "max ln K",
                            "effective prototypes", "prototypes K"], table, table_id="xml-seeds"))
        sec.add('<p class="note">Final values are means over the last 10% of iterations. Assignment entropy is the '
                "mean per-location entropy of the soft prototype assignment (0 = every location picks one prototype, "
                "ln K = uniform); effective prototypes = exp of the entropy of the batch-mean histogram (K = all "
                "used equally, 1 = one prototype explains everything). <i>not recorded</i>: the summary predates "
                "these diagnostics or lacks the value.</p>")
    return sec


def _gaps_html(ctx: Context) -> str:
    """The warning that names every configured seed without metrics (reported with --allow-missing):
    the statistics below use fewer seeds there."""
    if not ctx.gaps:
        return ""
    items = "".join(f'<li data-run="{esc(g.run)}" data-seed="{g.seed}" data-split="{esc(g.split)}">{esc(g)}</li>'
                    for g in ctx.gaps)
    return (f'<div class="warning" id="missing-seeds"><p><b>Warning: {len(ctx.gaps)} configured run/seed/split '
            "combination(s) have missing or NaN metrics</b> (reported because of <code>--allow-missing</code>). "
            "Means, sds and paired comparisons below leave them out, so they rest on fewer seeds than configured:"
            f"</p><ul>{items}</ul></div>")


def _page(ctx: Context, figures: dict[str, Figure], config_path, metrics_csv: Path) -> str:
    sections = []
    n_seeds = ctx.df["seed"].nunique()
    lead = (f"{len(ctx.order)} run(s) &times; {n_seeds} seed(s); baseline <b>{esc(ctx.baseline)}</b>; metrics on "
            f"classes unseen in training (test) and on held-out training classes (validation, used for model "
            f"selection only). Metrics table: <code>metrics.csv</code>.")
    summary = Section("summary", "Summary")
    summary.add(_gaps_html(ctx))
    summary.add(_xml_sentences_html(ctx))  # before the verdicts: a regulariser that learned nothing explains them
    if ctx.comparisons and "test" in ctx.splits:
        items = [_finding(c, how) for run, how in _headline_runs(ctx)
                 for c in [ctx.comparison(run, PRIMARY, "test")] if c is not None]
        summary.add('<ul class="findings" id="findings">' + "".join(items) + "</ul>")
        summary.add(_stats_note(ctx))
    else:
        split = ctx.splits[0]
        if len(ctx.order) == 1:
            why = f"Only one method, <b>{esc(ctx.order[0])}</b>, was run: there is nothing to compare it with."
        else:
            why = f"The baseline <b>{esc(ctx.baseline)}</b> is not in the metrics table: no paired comparison."
        facts = []
        for run in ctx.order:
            part = ctx.values(run, split)
            std = float(part.std(ddof=1)) if len(part) > 1 else math.nan
            facts.append(f"{esc(run)}: {html.mean_std(float(part.mean()), std)} over {len(part)} seed(s)")
        summary.add(f"<p>{why} {'Test' if split == 'test' else 'Validation'} MAP@R (mean &plusmn; sd): "
                    f"{'; '.join(facts)}.</p>")
    sections.append(summary)
    if ctx.xml or XML_LOSS_FIGURE in figures:
        sections.append(_xml_section(ctx, figures))

    res = Section("results", "Results per run (mean \u00b1 sd over seeds)")
    for split in ctx.splits:
        words = "Test: classes unseen in training" if split == "test" else "Validation: held-out training classes"
        res.add(f"<h3>{words}</h3>")
        res.add(_summary_table(ctx, split))
        res.add(_figure_html(figures, f"metrics_{split}.png"))
    res.add('<p class="note">Standard deviations are over seeds (ddof = 1); bold = best mean in its column. '
            "Recall@k is the fraction of queries with at least one same-class item among the k nearest.</p>")
    sections.append(res)

    if ctx.comparisons:
        comp = Section("comparison", f"Paired comparison with {ctx.baseline}")
        comp.add(_stats_note(ctx))
        for split in ctx.splits:
            comp.add(f"<h3>{'Test' if split == 'test' else 'Validation'}</h3>")
            comp.add(_comparison_table(ctx, split, [m for m, _ in METRICS] if split == "test" else MAIN_METRICS))
            if split == "test":
                said = [esc(describe(c, "test MAP@R")) for run in ctx.others
                        for c in [ctx.comparison(run, PRIMARY, "test")] if c is not None]
                comp.add('<p>In words, every run on the test classes:</p><ul class="all-comparisons">'
                         + "".join(f"<li>{t}</li>" for t in said) + "</ul>")
        comp.add(_figure_html(figures, "paired_differences.png"))
        sections.append(comp)

    if any(r.swept for r in ctx.runs):
        sweep = Section("sweeps", "Hyper-parameter sweeps")
        _sweep_html(ctx, sweep)
        sweep.add(_figure_html(figures, "sweeps.png"))
        sections.append(sweep)

    train = Section("training", "Training")
    train.add(_figure_html(figures, "training_curves.png"))
    train.add(_figure_html(figures, "validation_curves.png"))
    first = ctx.df.drop_duplicates(["run", "seed"])
    rows = []
    for run in ctx.order:
        g = first[first["run"] == run]
        sel = ", ".join(f"{int(s)}: {int(i)}" for s, i in zip(g["seed"], g["selected_iteration"]) if not pd.isna(i))
        rows.append([run, Cell(html.fmt(float(g["iterations"].max()), 0) if "iterations" in g else "n/a", numeric=True),
                     sel or "n/a", Cell(html.fmt(float(g["train_time_s"].mean()), 1) if "train_time_s" in g else "n/a",
                                        numeric=True)])
    train.add(html.table(["run", "iterations", "selected iteration (seed: iteration)", "training step time, mean over seeds (s)"],
                         rows, table_id="training"))
    sections.append(train)

    pics = [n for n in ("retrieval.png", "prototype_maps.png", "prototype_usage.png", "tsne.png") if n in figures]
    if pics:
        p = Section("pictures", "What the embeddings do")
        for n in pics:
            p.add(_figure_html(figures, n))
        sections.append(p)

    sections.append(_environment_html(ctx, config_path))
    data = Section("data", "Metrics table")
    data.add(f'<details open><summary>metrics.csv, one row per run, seed and split</summary>{_csv_table(metrics_csv)}</details>')
    sections.append(data)
    return html.page(f"xbml report: {ctx.dataset}", lead, sections)


def comparisons_table(comparisons: list[PairedComparison]) -> pd.DataFrame:
    """comparisons.csv: one row per run x split x metric, the numbers behind every verdict."""
    rows = [(c.method, c.split, c.metric, c.n, c.mean, c.ci_low, c.ci_high, c.p_value, c.p_adjusted, c.verdict)
            for c in comparisons]
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def build_report(
    config_path: str | Path, dataset: str, metrics_csv: str | Path, out_html: str | Path,
    results: str | Path = "results", prepared: str | None = None, device: str = "cpu", allow_missing: bool = False,
) -> list[Path]:
    """Write out_html, the PNGs, metrics.csv and comparisons.csv beside it; return the written paths.

    Everything is computed before the first file is written, so a report that fails leaves the
    previous one as it was."""
    from xbml.atomic import atomic_path

    metrics_csv, out_html = Path(metrics_csv), Path(out_html)
    ctx = _context(config_path, dataset, metrics_csv, results, prepared, device, allow_missing)
    figures = _make_figures(ctx)
    page = _page(ctx, figures, config_path, metrics_csv)
    out_dir = out_html.parent
    written = []
    for f in figures.values():
        with atomic_path(out_dir / f.name) as tmp:
            tmp.write_bytes(f.png)
        written.append(out_dir / f.name)
    copy = out_dir / "metrics.csv"
    if copy.resolve() != metrics_csv.resolve():
        write_text(copy, metrics_csv.read_text())
    written.append(copy)
    write_text(out_dir / "comparisons.csv", comparisons_table(ctx.comparisons).to_csv(index=False))
    written.append(out_dir / "comparisons.csv")
    write_text(out_html, page)  # last: its presence marks completion
    written.append(out_html)
    _readable(written)
    return written


def _readable(paths: list[Path]) -> None:
    """Atomic writes start from private temporary files; a report is meant to be shared."""
    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        os.chmod(p, 0o666 & ~umask)
