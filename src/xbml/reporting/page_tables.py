"""The tables and statistical notes of the report page, as HTML fragments of the analysis:
per-run summaries, paired comparisons, what the seeds can show, sweeps, XML diagnostics, the
missing-seed warning and the metrics table itself."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from xbml.reporting import convergence, html, xml_diagnostics
from xbml.reporting.analysis import Analysis
from xbml.reporting.html import Cell, Section, esc
from xbml.reporting.results import METRIC_LABELS, METRICS, PRIMARY, SPLIT_LABELS
from xbml.reporting.statistics import (
    BETTER,
    CORRECTION_NAME,
    INTERVAL_NAME,
    TEST_NAME,
    WORSE,
    PairedComparison,
    describe,
    floor_note,
    smallest_p,
)
from xbml.reporting.tables import summary_over_seeds


def summary_table(a: Analysis, split: str) -> str:
    summary = summary_over_seeds(a.df, split, a.order)
    best = {m: summary[f"{m}_mean"].max() for m, _ in METRICS}
    headers = ["run", "method", "swept", "seeds", *(label for _, label in METRICS)]
    rows = []
    for _, rec in summary.iterrows():
        row = [rec["run"], rec["method"], a.swept_values(rec["run"]) or "\u2013", Cell(str(rec["seeds"]), numeric=True)]
        for m, _ in METRICS:
            mean, std = float(rec[f"{m}_mean"]), float(rec[f"{m}_std"])
            row.append(Cell(html.mean_std(mean, std), numeric=True, classes=("best",) if mean == best[m] and len(summary) > 1 else (),
                            attrs={"data-run": rec["run"], "data-metric": m, "data-split": split,
                                   "data-mean": repr(mean), "data-std": repr(std)}))
        rows.append(row)
    return html.table(headers, rows, table_id=f"summary-{split}")


def comparison_table(a: Analysis, split: str, metrics) -> str:
    seeds = sorted({s for c in a.comparisons if c.split == split for s in c.seeds})
    level = round(a.confidence * 100)
    headers = ["run", "metric", *(f"\u0394 seed {s}" for s in seeds), "mean \u0394", f"{level}% {INTERVAL_NAME}",
               f"{TEST_NAME} p", f"{CORRECTION_NAME}-adjusted p", "verdict"]
    rows = []
    for run in a.others:
        for metric in metrics:
            c = a.comparison(run, metric, split)
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
                Cell(c.verdict, classes=verdict_classes(c)),
            ])
    return html.table(headers, rows, table_id=f"comparison-{split}")


def verdict_classes(c: PairedComparison) -> tuple[str, ...]:
    return (c.verdict,) if c.verdict in (BETTER, WORSE) else ()


def finding(c: PairedComparison, how: str) -> str:
    text = describe(c, f"{SPLIT_LABELS.get(c.split, c.split).lower()} {METRIC_LABELS[c.metric]}")
    if how:
        text = f"{how[0].upper()}{how[1:]}: {text}"
    classes = verdict_classes(c)
    cls = f' class="{classes[0]}"' if classes else ""
    attrs = (f'data-run="{esc(c.method)}" data-metric="{c.metric}" data-split="{c.split}" data-mean="{c.mean!r}" '
             f'data-low="{c.ci_low!r}" data-high="{c.ci_high!r}" data-verdict="{esc(c.verdict)}"')
    return f'<li {attrs}><span{cls}>{esc(text)}</span></li>'


def _split_limits(a: Analysis, split: str) -> str:
    """What the seeds of one split can show: the exact test's floor, Holm's floor, the resolution."""
    comps = [c for c in a.comparisons if c.split == split]
    tested = [c for c in comps if c.n >= 2]
    name = a.split_label(split)
    if not tested:
        return f"{name}: one seed per comparison, no test is possible."
    alpha = tested[0].alpha
    ns = sorted({c.n for c in tested})
    n = ns[0]  # the fewest seeds bound what the split can show
    m = tested[0].family_size
    seeds = f"{n}" if len(ns) == 1 else f"{ns[0]}\u2013{ns[-1]}"
    text = f"{name}: {m} tests ({len(a.others)} run(s) \u00d7 metrics) share one {CORRECTION_NAME} correction; "
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


def stats_note(a: Analysis) -> str:
    level = round(a.confidence * 100)
    alpha = f"{1 - a.confidence:.2g}"
    limits = "".join(f"<li>{esc(_split_limits(a, split))}</li>" for split in a.splits)
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


def sweep_html(a: Analysis, sec: Section) -> None:
    for method in dict.fromkeys(r.method for r in a.runs if r.swept):
        settings = [n for n in a.order if a.method_of(n) == method]
        if not settings:
            continue
        sec.add(f"<h3>{esc(method)}</h3>")
        headers = ["setting", "swept values", "seeds", "validation MAP@R", "test MAP@R", ""]
        rows, classes = [], []
        for n in settings:
            cells = []
            for split in ("val", "test"):
                part = a.values(n, split)
                std = float(part.std(ddof=1)) if len(part) > 1 else math.nan
                cells.append(Cell(html.mean_std(float(part.mean()), std) if len(part) else "\u2013", numeric=True))
            seeds = a.df[a.df["run"] == n]["seed"].nunique()
            mark = "selected on validation" if a.selected.get(method) == n else ""
            rows.append([n, a.swept_values(n), Cell(str(seeds), numeric=True), *cells, mark])
            classes.append("selected" if mark else "")
        sec.add(html.table(headers, rows, table_id=f"sweep-{method}", row_classes=classes))
        best = a.selected.get(method)
        if best is None:
            sec.add('<p class="note">No validation split in the metrics table: no setting is selected (choosing by '
                    "test MAP@R would select on the test set).</p>")
            continue
        part = a.values(best, "test")
        std = float(part.std(ddof=1)) if len(part) > 1 else math.nan
        text = (f"Selected on validation MAP@R: <b>{esc(a.swept_values(best))}</b> (validation MAP@R "
                f"{a.mean(best, 'val'):.4f}). <b>Test result of the selected setting</b>, reported separately and "
                f"not used for the choice: MAP@R {html.mean_std(float(part.mean()), std)} over {len(part)} seeds.")
        c = a.comparison(best, PRIMARY, "test")
        if c is not None:
            text += " " + esc(describe(c, "test MAP@R"))
        sec.add(f'<p class="selected-setting" data-method="{esc(method)}" data-run="{esc(best)}">{text}</p>')


def xml_sentences_html(a: Analysis) -> str:
    if not a.xml:
        return ""
    items = "".join(f'<li data-run="{esc(d.run)}">{esc(xml_diagnostics.sentence(d))}</li>' for d in a.xml)
    return f'<p>Did the XML regulariser learn?</p><ul class="xml-diagnostics" id="xml-diagnostics">{items}</ul>'


def convergence_html(a: Analysis) -> str:
    """Per run: did validation MAP@R still rise over the last third of training?"""
    if not a.convergence:
        return ""
    items = "".join(f'<li data-run="{esc(c.run)}" data-gain="{c.mean_gain!r}" data-plateau="{str(c.plateau).lower()}">'
                    f"{esc(convergence.sentence(c))}</li>" for c in a.convergence)
    return f'<p>Did training reach a plateau?</p><ul class="convergence" id="convergence">{items}</ul>'


def gaps_html(a: Analysis) -> str:
    """The warning that names every configured seed without metrics (reported with --allow-missing):
    the statistics below use fewer seeds there."""
    if not a.gaps:
        return ""
    items = "".join(f'<li data-run="{esc(g.run)}" data-seed="{g.seed}" data-split="{esc(g.split)}">{esc(g)}</li>'
                    for g in a.gaps)
    return (f'<div class="warning" id="missing-seeds"><p><b>Warning: {len(a.gaps)} configured run/seed/split '
            "combination(s) have missing or NaN metrics</b> (reported because of <code>--allow-missing</code>). "
            "Means, sds and paired comparisons below leave them out, so they rest on fewer seeds than configured:"
            f"</p><ul>{items}</ul></div>")


def csv_table(metrics_csv: Path) -> str:
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


def xml_table(a: Analysis, sec: Section) -> None:
    """Every XML run's diagnostics per seed, with what the columns mean."""
    rows = [row for d in a.xml for row in xml_diagnostics.seed_rows(d)]
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
