"""The report page: the HTML of the analysis, its figures with their captions and the
environment the results came from, assembled into one self-contained page."""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd
import yaml

from xbml.reporting import environment, html
from xbml.reporting import page_tables as tables
from xbml.reporting.analysis import Analysis
from xbml.reporting.figures import REGULARIZER_FIGURE, Figure
from xbml.reporting.picture_figures import PICTURES
from xbml.reporting.html import Cell, Section, esc
from xbml.metric_names import RANK_METRICS, TESTED_METRICS
from xbml.reporting.results import METRICS, PRIMARY, SPLIT_MEANINGS
from xbml.reporting.statistics import describe


def page(a: Analysis, figures: dict[str, Figure]) -> str:
    sections = []
    n_seeds = a.df["seed"].nunique()
    lead = (f"{len(a.order)} run(s) &times; {n_seeds} seed(s); baseline <b>{esc(a.baseline)}</b>; metrics on "
            f"classes unseen in training (test) and on held-out training classes (validation, used for model "
            f"selection only). Metrics table: <code>metrics.csv</code>.")
    if a.fold_protocol:
        lead += (" Protocol <b>mlrc_4fold</b> (MLRC): every seed trains 4 fold models, each on 3 of 4 "
                 "class-disjoint folds of the training classes and validated on the fourth. <i>Test</i> evaluates "
                 "their embeddings concatenated (each L2-normalised), <i>test, fold models separately</i> the mean "
                 "of the 4 models evaluated alone, <i>validation</i> the mean over the models of their held-out "
                 "folds. Curves and pictures show fold 0.")
    summary = Section("summary", "Summary")
    summary.add(tables.gaps_html(a))
    summary.add(tables.regularizer_sentences_html(a))  # before the verdicts: a regulariser that learned nothing explains them
    summary.add(tables.convergence_html(a))  # and models still improving compare learning speed, not end points
    if a.comparisons and "test" in a.splits:
        summary.add(tables.primary_html(a))
        items = [tables.finding(c, how) for run, how in a.headline
                 for c in [a.comparison(run, PRIMARY, "test")] if c is not None and not c.primary]
        if items:
            summary.add("<p>Exploratory (the other runs' test MAP@R; not the experiment's answer, "
                        "Holm-corrected with every other exploratory test of the split):</p>"
                        '<ul class="findings" id="findings">' + "".join(items) + "</ul>")
        summary.add(tables.stats_note(a))
    else:
        split = a.splits[0]
        if len(a.order) == 1:
            why = f"Only one method, <b>{esc(a.order[0])}</b>, was run: there is nothing to compare it with."
        else:
            why = f"The baseline <b>{esc(a.baseline)}</b> is not in the metrics table: no paired comparison."
        facts = []
        for run in a.order:
            part = a.values(run, split)
            std = float(part.std(ddof=1)) if len(part) > 1 else math.nan
            facts.append(f"{esc(run)}: {html.mean_std(float(part.mean()), std)} over {len(part)} seed(s)")
        summary.add(f"<p>{why} {a.split_label(split)} MAP@R (mean &plusmn; sd): "
                    f"{'; '.join(facts)}.</p>")
    sections.append(summary)
    if a.regularizers:
        regs = Section("regularizers", "Regulariser diagnostics")
        regs.add(_figure_html(figures, REGULARIZER_FIGURE))
        tables.regularizer_table(a, regs)
        sections.append(regs)

    res = Section("results", "Results per run (mean \u00b1 sd over seeds)")
    for split in a.splits:
        res.add(f"<h3>{a.split_label(split)}: {SPLIT_MEANINGS[split]}</h3>")
        res.add(tables.summary_table(a, split))
        if f"metrics_{split}.png" in figures:
            res.add(_figure_html(figures, f"metrics_{split}.png"))
    res.add('<p class="note">Standard deviations are over seeds (ddof = 1); bold = best mean in its column. '
            "Recall@k is the fraction of queries with at least one same-class item among the k nearest.</p>")
    sections.append(res)

    if a.comparisons:
        comp = Section("comparison", f"Paired comparison with {a.baseline}")
        comp.add(tables.stats_note(a))
        for split in a.splits:
            comp.add(f"<h3>{a.split_label(split)}</h3>")
            comp.add(tables.comparison_table(a, split, TESTED_METRICS if split == "test" else RANK_METRICS))
            if split == "test":
                said = [esc(describe(c, "test MAP@R")) for run in a.others
                        for c in [a.comparison(run, PRIMARY, "test")] if c is not None]
                comp.add('<p>In words, every run on the test classes:</p><ul class="all-comparisons">'
                         + "".join(f"<li>{t}</li>" for t in said) + "</ul>")
        comp.add(_figure_html(figures, "paired_differences.png"))
        sections.append(comp)

    if any(r.swept for r in a.runs):
        sweep = Section("sweeps", "Hyper-parameter sweeps")
        tables.sweep_html(a, sweep)
        sweep.add(_figure_html(figures, "sweeps.png"))
        sections.append(sweep)

    train = Section("training", "Training")
    train.add(_figure_html(figures, "training_curves.png"))
    train.add(_figure_html(figures, "validation_curves.png"))
    first = a.df.drop_duplicates(["run", "seed"])
    rows = []
    for run in a.order:
        g = first[first["run"] == run]
        sel = ", ".join(f"{int(s)}: {int(i)}" for s, i in zip(g["seed"], g["selected_iteration"]) if not pd.isna(i))
        rows.append([run, Cell(html.fmt(float(g["iterations"].max()), 0) if "iterations" in g else "n/a", numeric=True),
                     sel or "n/a", Cell(html.fmt(float(g["train_time_s"].mean()), 1) if "train_time_s" in g else "n/a",
                                        numeric=True)])
    train.add(html.table(["run", "iterations", "selected iteration (seed: iteration)", "training step time, mean over seeds (s)"],
                         rows, table_id="training"))
    sections.append(train)

    if "test" in a.splits:
        p = Section("pictures", "What the embeddings do")
        for n in ("retrieval.png", "prototype_maps.png", "prototype_usage.png", "tsne.png"):
            p.add(_figure_html(figures, n))
        sections.append(p)

    missing = [f for f in figures.values() if not f.drawn]
    if missing:
        sections.append(_not_drawn(missing))

    # only the pictures run torch: whether they did, not what this process imported before, decides
    sections.append(_environment_html(a, look_for_gpu=any(figures[n].drawn for n in PICTURES)))
    data = Section("data", "Metrics table")
    data.add(f'<details open><summary>metrics.csv, one row per run, seed and split</summary>{tables.csv_table(a.metrics_csv)}</details>')
    sections.append(data)
    return html.page(f"xbml report: {a.dataset}", lead, sections)


def _figure_html(figures: dict[str, Figure], name: str) -> str:
    f = figures.get(name)
    if f is None:
        return ""
    if not f.drawn:
        return f'<p class="note">Figure <code>{esc(name)}</code> not drawn: {esc(f.message)}.</p>'
    caption = f.caption + (f" {esc(f.details)}" if f.details else "")
    return html.figure(name, f.png, f.alt, caption)


def _not_drawn(missing: list[Figure]) -> Section:
    """Every placeholder, also those of sections the page leaves out (no sweep, no XML run)."""
    sec = Section("not-drawn", "Figures not drawn")
    items = "".join(f'<li data-file="{esc(f.name)}"><code>{esc(f.name)}</code>: {esc(f.message)}</li>' for f in missing)
    sec.add("<p>These files are written beside the page (the workflow declares every figure) as placeholders "
            f'that say why they are empty:</p><ul id="not-drawn-figures">{items}</ul>')
    return sec


def _environment_html(a: Analysis, look_for_gpu: bool) -> Section:
    sec = Section("environment", "Environment and provenance")
    version = environment.data_version(a.results, a.dataset)
    dvc = environment.dvc_hash(version)
    sec.add("<h3>Data</h3>")
    if version is None:
        sec.add(f'<p class="note">No {esc(a.results / a.dataset / "data_version.json")}: the dataset version is '
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
    sec.add(f"<p>File <code>{esc(a.config_path)}</code>; baseline <b>{esc(a.baseline)}</b>; seeds "
            f"{esc(', '.join(str(s) for s in a.config['seeds']))}.</p>")
    sec.add(f"<pre>{esc(yaml.safe_dump(a.config, sort_keys=False))}</pre>")
    devices: Counter = Counter()
    for run in a.runs:
        s = a.summary(run)
        if s:
            devices[(s.get("device"), s.get("bf16"), s.get("threads"), s.get("world_size"))] += 1
    sec.add("<h3>Devices and libraries</h3>")
    if devices:
        sec.add(html.table(["training device", "bf16", "threads", "processes", "runs"],
                           [[d, b, t, w, Cell(str(n), numeric=True)] for (d, b, t, w), n in devices.items()],
                           table_id="devices"))
    sec.add(html.table(["report machine", ""], [[k, v] for k, v in environment.machine(look_for_gpu).items()]))
    sec.add(html.table(["library", "version"], [[k, v] for k, v in environment.library_versions().items()],
                       table_id="libraries"))
    sec.add("<h3>Cost of each stage</h3>")
    bench = environment.benchmarks(a.results, a.dataset)
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
