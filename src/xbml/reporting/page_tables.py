"""The tables and statistical notes of the report page, as HTML fragments of the analysis:
per-run summaries, paired comparisons, what the seeds can show, sweeps, XML diagnostics, the
missing-seed warning and the metrics table itself."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from xbml.reporting import convergence, html, regularizer_diagnostics
from xbml.reporting.analysis import Analysis
from xbml.reporting.html import Cell, Section, esc
from xbml.reporting.results import METRIC_LABELS, METRICS, PRIMARY, SPLIT_LABELS
from xbml.reporting.statistics import (
    CORRECTION_NAME,
    EQUIVALENCE_NAMES,
    INCONCLUSIVE,
    INTERVAL_NAME,
    TEST_NAME,
    PairedComparison,
    describe,
    floor_note,
    margin_text,
    seeds_for_a_verdict,
    simulated_power,
    smallest_p,
    verdict_kind,
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
    eq_level = round((1 - 2 * (1 - a.confidence)) * 100)
    margin = margin_text(a.report_cfg["equivalence_margin"])
    headers = ["run", "metric", "family", *(f"\u0394 seed {s}" for s in seeds), "mean \u0394",
               f"{level}% {INTERVAL_NAME}", f"{TEST_NAME} p", f"{CORRECTION_NAME}-adjusted p",
               f"{eq_level}% t interval", f"equivalence p ({margin})", "adjusted equivalence p", "verdict"]
    rows = []
    for run in a.others:
        for metric in metrics:
            c = a.comparison(run, metric, split)
            if c is None:
                continue
            by_seed = dict(zip(c.seeds, c.differences))
            rows.append([
                run, METRIC_LABELS[metric], Cell(c.family, classes=("primary-family",) if c.primary else ()),
                *(Cell(f"{by_seed[s]:+.4f}" if s in by_seed else "\u2013", numeric=True) for s in seeds),
                Cell(f"{c.mean:+.4f}", numeric=True, attrs={"data-run": run, "data-metric": metric, "data-split": split,
                                                             "data-mean": repr(c.mean)}),
                Cell(f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]" if c.n > 1 else "n/a", numeric=True,
                     attrs={"data-low": repr(c.ci_low), "data-high": repr(c.ci_high)}),
                Cell(html.fmt(c.p_value, 3), numeric=True),
                Cell(html.fmt(c.p_adjusted, 3), numeric=True),
                Cell(f"[{c.eq_low:+.4f}, {c.eq_high:+.4f}]" if c.n > 1 else "n/a", numeric=True),
                Cell(html.fmt(c.equivalence_p, 3), numeric=True),
                Cell(html.fmt(c.equivalence_p_adjusted, 3), numeric=True),
                Cell(c.verdict, classes=verdict_classes(c)),
            ])
    return html.table(headers, rows, table_id=f"comparison-{split}")


def verdict_classes(c: PairedComparison) -> tuple[str, ...]:
    return (verdict_kind(c.verdict),)


def finding(c: PairedComparison, how: str) -> str:
    text = describe(c, f"{SPLIT_LABELS.get(c.split, c.split).lower()} {METRIC_LABELS[c.metric]}")
    if how:
        text = f"{how[0].upper()}{how[1:]}: {text}"
    cls = f' class="{verdict_classes(c)[0]}"'
    attrs = (f'data-run="{esc(c.method)}" data-metric="{c.metric}" data-split="{c.split}" data-mean="{c.mean!r}" '
             f'data-low="{c.ci_low!r}" data-high="{c.ci_high!r}" data-verdict="{esc(c.verdict)}"')
    return f'<li {attrs}><span{cls}>{esc(text)}</span></li>'


def _split_limits(a: Analysis, split: str) -> str:
    """What the seeds of one split's exploratory family can show: the exact test's floor, Holm's
    floor, the resolution."""
    comps = [c for c in a.exploratory if c.split == split]
    tested = [c for c in comps if c.n >= 2]
    name = f"{a.split_label(split)}, exploratory"
    if not comps:
        return ""
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
    eq_level = round((1 - 2 * (1 - a.confidence)) * 100)
    alpha = f"{1 - a.confidence:.2g}"
    cfg = a.report_cfg
    margin = margin_text(cfg["equivalence_margin"])
    limits = "".join(f"<li>{esc(text)}</li>" for split in a.splits for text in [_split_limits(a, split)] if text)
    return (
        f'<div class="note stats-note"><p>Statistics: per-seed differences (method &minus; baseline, same seed = '
        f"same batches and initial weights); their mean; a {level}% t interval of the mean (mean &plusmn; "
        f"t &middot; sd/&radic;n); an exact two-sided sign-flip permutation test (all 2<sup>n</sup> sign assignments "
        f"of the differences, no distribution assumed); an equivalence test within the declared margin {margin} "
        f"({EQUIVALENCE_NAMES[cfg['equivalence_test']]}: two one-sided tests, each at {alpha}; the {eq_level}% t "
        f"interval is shown beside it). The comparison declared before the run is the <b>primary</b> family "
        f"(its p-values are not multiplied by the others); every other test is <b>exploratory</b>, "
        f"{CORRECTION_NAME}-corrected within its split. Verdicts: <b>better</b>/<b>worse</b> where the adjusted "
        f"p &lt; {alpha} <b>and</b> the interval excludes 0 (&ldquo;within {margin}&rdquo; added where equivalence "
        f"also holds: a real but small effect); otherwise <b>equivalent within {margin}</b> where the equivalence "
        f"test holds; otherwise <b>{INCONCLUSIVE}</b>: these seeds can tell neither a difference nor its absence. "
        f"R@1 equals P@1 by definition and is shown but not tested. Every number is in "
        f"<code>comparisons.csv</code>.</p>"
        f'<ul class="limits">{limits}</ul></div>'
    )


def primary_html(a: Analysis) -> str:
    """The declared comparison(s) and their verdicts, first on the page: the experiment's answer."""
    if not a.primary:
        return ""
    cfg = a.report_cfg
    declared = all(p.declared for p in a.primary)
    how = ("declared in the config before the run (<code>report.primary</code>)" if declared else
           "<b>not declared</b> in the config: the config has one run besides the baseline, so its test MAP@R is "
           "taken (declare <code>report.primary</code> to make that explicit)")
    items = []
    for p in a.primary:
        c = a.comparison(p.run, p.metric, p.split)
        label = f"{SPLIT_LABELS.get(p.split, p.split).lower()} {METRIC_LABELS[p.metric]}"
        if c is None:
            items.append(f'<li data-run="{esc(p.run)}"><b>No result</b>: the metrics table has no paired seeds of '
                         f"{esc(p.run)} and {esc(a.baseline)} on {esc(label)}.</li>")
            continue
        power = _power_text(c, len(a.primary))
        attrs = (f'data-run="{esc(c.method)}" data-metric="{c.metric}" data-split="{c.split}" data-mean="{c.mean!r}" '
                 f'data-low="{c.ci_low!r}" data-high="{c.ci_high!r}" data-verdict="{esc(c.verdict)}" data-n="{c.n}"')
        items.append(f'<li {attrs}><b class="{verdict_classes(c)[0]}">{esc(c.verdict)}</b>: '
                     f"{esc(describe(c, label))}{(' ' + esc(power)) if power else ''}</li>")
    compared = {a.baseline, *(p.run for p in a.primary)}
    rising = [c for c in a.convergence if c.run in compared and not c.plateau]
    if rising:
        items.append(f'<li class="plateau-caveat"><b>Not at a plateau</b>: {esc(convergence.caveat(rising))}</li>')
    family = (f"{len(a.primary)} tests, {CORRECTION_NAME}-corrected among themselves" if len(a.primary) > 1
              else "one test")
    needed = seeds_for_a_verdict(a.primary_results[0].alpha if a.primary_results else 0.05, len(a.primary))
    return (f'<div class="primary" id="primary"><h3>Primary comparison</h3><p>The experiment\'s question, {how}: '
            f"{family} (exact sign-flip test, equivalence margin {margin_text(cfg['equivalence_margin'])}, "
            f"{EQUIVALENCE_NAMES[cfg['equivalence_test']]}); a verdict needs at least {needed} paired seeds. "
            "Declared before the results existed, its p-value means what it says (a 5% false-positive rate); a "
            "comparison picked afterwards for looking best among many would not. Everything else on this page "
            "is exploratory: it suggests what to test next, it does not answer the question.</p>"
            f'<ul class="primary-verdicts">{"".join(items)}</ul></div>')


def _power_text(c: PairedComparison, tests: int) -> str:
    """The design's power at half and one margin, from the observed sd of the differences."""
    if c.n < 2 or not c.sd > 0:
        return ""
    figures = [f"{simulated_power(f * c.margin, c.sd, c.n, c.alpha, tests):.0%} at {f * c.margin:g}"
               for f in (0.5, 1.0)]
    return (f"Power of this design ({c.n} seeds, the observed sd of the differences {c.sd:.4f}, normal differences) "
            f"to call a true difference better or worse: {', '.join(figures)}.")


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


def regularizer_sentences_html(a: Analysis) -> str:
    if not a.regularizers:
        return ""
    items = "".join(f'<li data-run="{esc(d.run)}" data-regularizer="{esc(d.name)}">'
                    f"{esc(regularizer_diagnostics.sentence(d))}</li>" for d in a.regularizers)
    return f'<p>Did the regularisers learn?</p><ul class="regularizer-diagnostics" id="regularizer-diagnostics">{items}</ul>'


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


def regularizer_table(a: Analysis, sec: Section) -> None:
    """Every regulariser's diagnostics per run and seed, with what the columns mean."""
    rows = [row for d in a.regularizers for row in regularizer_diagnostics.seed_rows(d)]
    if not rows:
        return
    missing = regularizer_diagnostics.NOT_RECORDED

    def num(value, digits=3):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return Cell(html.fmt(float(value), digits) if ok else "n/a" if value is None else str(value), numeric=ok)

    extra = list(dict.fromkeys(k for r in rows for k in r["diagnostics"]))
    table = []
    for r in rows:
        learned = "n/a" if r["learned"] is None else "yes" if r["learned"] else "no"
        facts = ", ".join(f"{k} {v}" for k, v in r["facts"].items())
        table.append([r["run"], Cell(str(r["seed"]), numeric=True), r["regularizer"],
                      *(([num(r["chance_loss"]), num(r["final_loss"]), num(r["ratio_to_chance"]), learned,
                          *(num(r["diagnostics"].get(k)) for k in extra), facts]) if r["recorded"]
                        else [missing] * (5 + len(extra)))])
    sec.add(html.table(["run", "seed", "regulariser", "chance", "final loss", "ratio to chance", "learned",
                        *extra, "settings"], table, table_id="regularizer-seeds"))
    sec.add('<p class="note">Final values are means over the last 10% of iterations; chance is the loss of a '
            "uniform guess where one is defined (XML: ln C over the C training classes). XML's assignment entropy is "
            "the mean per-location entropy of the soft prototype assignment (0 = every location picks one "
            "prototype, ln K = uniform); effective prototypes = exp of the entropy of the batch-mean histogram "
            f"(K = all used equally, 1 = one prototype explains everything). <i>{missing}</i>: the seed's summary "
            "lacks the regulariser's block.</p>")
