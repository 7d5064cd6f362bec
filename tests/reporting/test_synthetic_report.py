"""`xbml report` on a hand-written results tree (no training): comparisons.csv, the verdict words,
and the XML diagnostics placed before the verdicts."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
from synthetic import aggregate, imported_modules, report, write_tree, xml_summary

from xbml.metric_names import TESTED_METRICS
from xbml.reporting.statistics import EXPLORATORY_FAMILY, PRIMARY_FAMILY, compare, holm_adjust

SEEDS = tuple(range(10))  # 18 tests x 2/2^10 = 0.035: a consistent difference can be significant
RUNS = ("baseline", "xml", "xml_flat", "xml_old")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    base = tmp_path_factory.mktemp("synthetic_report")
    tree = write_tree(
        base / "tree", seeds=SEEDS,
        methods={"baseline": {}, "xml": {"xml.weight": 0.3}, "xml_flat": {"xml.weight": 0.2},
                 "xml_old": {"xml.weight": 0.1}},
        summaries={"xml_flat": xml_summary(learned=False, ratio=0.999), "xml_old": "absent"},
        effects={"xml": (0.01, 0.0005), "xml_flat": (0.0, 0.004), "xml_old": (-0.02, 0.001)},
    )
    table = base / "metrics.csv"
    res = aggregate(tree, table)
    assert res.returncode == 0, res.stderr
    page = base / "report" / "index.html"
    res = report(tree, table, page, python_flags=("-X", "importtime"))
    assert res.returncode == 0, res.stderr
    return {"tree": tree, "table": table, "page": page, "text": page.read_text(),
            "imported": imported_modules(res.stderr)}


def test_a_report_that_draws_no_picture_never_imports_torch(made):
    """A tree without embeddings or model.pt: the pictures are placeholders, and neither they nor
    the machine table import torch (2.5-3 CPU-s of every report) only to find that out."""
    assert "seaborn" in made["imported"]  # the probe sees the imports
    assert "torch" not in made["imported"]
    assert re.search(r"<td>gpu</td>\s*<td>not looked for \(this report drew no picture", made["text"])


def _expected(df: pd.DataFrame):
    per = lambda run, split, metric: {  # noqa: E731
        int(s): v for s, v in df[(df.run == run) & (df.split == split)][["seed", metric]].values}
    family = lambda run, split, m: (  # noqa: E731  the synthetic config declares xml's test MAP@R
        PRIMARY_FAMILY if (run, split, m) == ("xml", "test", "map_at_r") else EXPLORATORY_FAMILY)
    comps = [compare(run, "baseline", m, split, per(run, split, m), per("baseline", split, m),
                     family=family(run, split, m))
             for run in RUNS[1:] for split in ("test", "val") for m in TESTED_METRICS]
    return {(c.method, c.split, c.metric): c for c in holm_adjust(comps)}


def test_comparisons_csv_has_the_columns_and_numbers_of_the_statistics(made):
    path = made["page"].parent / "comparisons.csv"
    csv = pd.read_csv(path)
    assert list(csv.columns) == ["family", "run", "split", "metric", "n_seeds", "mean_diff", "ci_low", "ci_high",
                                 "p_value", "p_adjusted", "margin", "equivalence_test", "eq_ci_low", "eq_ci_high",
                                 "equivalence_p", "equivalence_p_adjusted", "family_size", "verdict"]
    assert len(csv) == 3 * 2 * len(TESTED_METRICS) and "recall_at_1" not in set(csv.metric)
    # exactly one primary row, first, a family of its own
    assert list(csv.family).count("primary") == 1 and csv.family.iloc[0] == "primary"
    assert (csv.run.iloc[0], csv.split.iloc[0], csv.metric.iloc[0], csv.family_size.iloc[0]) == (
        "xml", "test", "map_at_r", 1)
    expected = _expected(pd.read_csv(made["table"]))
    for row in csv.itertuples(index=False):
        c = expected[row.run, row.split, row.metric]
        assert row.n_seeds == len(SEEDS)
        assert (row.mean_diff, row.ci_low, row.ci_high) == pytest.approx((c.mean, c.ci_low, c.ci_high), abs=1e-12)
        assert row.p_value == pytest.approx(c.p_value, abs=1e-12)
        assert row.p_adjusted == pytest.approx(c.p_adjusted, abs=1e-12)
        assert row.equivalence_p == pytest.approx(c.equivalence_p, abs=1e-12)
        assert row.equivalence_p_adjusted == pytest.approx(c.equivalence_p_adjusted, abs=1e-12)
        assert (row.eq_ci_low, row.eq_ci_high) == pytest.approx((c.eq_low, c.eq_high), abs=1e-12)
        assert row.margin == 0.01 and row.equivalence_test == "sign_flip" and row.family == c.family
        assert row.verdict == c.verdict
    verdicts = csv[csv.metric == "map_at_r"].set_index(["run", "split"])["verdict"]
    assert verdicts["xml", "test"] == "better" and verdicts["xml_old", "test"] == "worse"
    # differences of +-0.004 on 10 seeds: inside the margin, and the exact TOST shows it
    assert verdicts["xml_flat", "test"] == "equivalent within \u00b10.01"
    assert csv.p_adjusted.iloc[0] == pytest.approx(2 / 2 ** 10)  # the primary: not multiplied by the others
    assert csv[csv.run == "xml"]["p_adjusted"].max() == pytest.approx(18 * 2 / 2 ** 10)


def test_the_page_states_the_verdicts_and_what_the_seeds_can_show(made):
    text = made["text"]
    words = text[:text.index('<section id="environment"')]  # the words above the environment's config dump
    assert "bootstrap" not in words.lower() and "t-test" not in words
    findings = dict(re.findall(r'<li data-run="([^"]+)"[^>]*data-verdict="([^"]+)"', text))
    assert findings == {"xml": "better", "xml_flat": "equivalent within \u00b10.01", "xml_old": "worse"}
    assert "xml improves test MAP@R by +0.010" in text
    assert "xml_old worsens test MAP@R by -0.020" in text
    assert "xml_flat vs baseline on test MAP@R: equivalent within \u00b10.01" in text
    assert "Test, exploratory: 17 tests (3 run(s) \u00d7 metrics) share one Holm correction; with 10 seeds the " \
           "smallest p the exact test can give is 2/2^10 = 0.00195 (Holm&#x27;s smallest adjusted p 0.0332)" in text
    # the declared comparison leads the page, named as such, with its power
    primary = text[text.index('id="primary"'):text.index("</div>", text.index('id="primary"'))]
    assert text.index('id="primary"') < text.index('id="findings"')
    assert "declared in the config before the run" in primary and 'data-verdict="better"' in primary
    assert "Power of this design (10 seeds" in primary
    # every synthetic validation curve still rises over its last third: the verdicts say what they compare
    caveat = primary[primary.index('class="plateau-caveat"'):]
    assert "Not at a plateau" in caveat and "baseline +0." in caveat and "xml +0." in caveat
    assert "after 100 iterations, not trained ones" in caveat and "xml_old" not in caveat  # not declared
    assert "Exploratory" in text[text.index('id="primary"'):text.index('id="findings"')]
    assert "The smallest MAP@R difference these seeds resolve is" in text
    header = re.search(r'<table id="comparison-test">.*?</thead>', text, re.S).group(0)
    assert "95% t interval" in header and "Holm-adjusted p" in header and "exact sign-flip test p" in header


def test_regularizer_diagnostics_come_before_the_verdicts(made):
    text = made["text"]
    start = text.index('id="regularizer-diagnostics"')
    assert start < text.index('id="primary"') < text.index('id="findings"') < text.index('id="comparison"')
    block = text[start:text.index("</ul>", start)]
    assert "xml: the XML prediction loss fell to 0.87 \u00d7 chance (4.61) over the last 10% of iterations" in block
    assert "xml_flat: the XML prediction loss never left chance (4.61; it ended at 1.00 \u00d7 chance over " \
           "the last 10% of iterations): the regulariser had no effect in this run." in block
    assert "xml_old" not in block and "baseline" not in block  # their summaries hold no regulariser block
    assert text.index('id="fig-regularizer_losses"') < text.index('id="results"')
    png = made["page"].parent / "regularizer_losses.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = text[text.index('id="regularizer-seeds"'):]
    assert table.count("<tr") - 1 >= 2 * len(SEEDS)
    assert not math.isnan(float(re.search(r"<td[^>]*>(0\.870)</td>", table).group(1)))
