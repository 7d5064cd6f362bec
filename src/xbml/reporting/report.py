"""Writing the report of one dataset: reports/{dataset}/index.html (self-contained) with every
figure's PNG, a copy of the metrics table and comparisons.csv (every paired comparison,
machine-readable) beside it. The work is done by `analysis` (the numbers), `figures` and
`picture_figures` (the PNGs, captioned from the caption files) and `page` (the HTML)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from xbml.atomic import write_text
from xbml.reporting.statistics import PairedComparison

COMPARISON_COLUMNS = ("family", "run", "split", "metric", "n_seeds", "mean_diff", "ci_low", "ci_high", "p_value",
                      "p_adjusted", "margin", "equivalence_test", "eq_ci_low", "eq_ci_high", "equivalence_p",
                      "equivalence_p_adjusted", "family_size", "verdict")


def comparisons_table(comparisons: list[PairedComparison]) -> pd.DataFrame:
    """comparisons.csv: one row per run x split x tested metric, the primary family first, the
    numbers behind every verdict (ci_*: the confidence-level t interval; eq_ci_*: the
    1 - 2 alpha t interval of the equivalence test)."""
    rows = [(c.family, c.method, c.split, c.metric, c.n, c.mean, c.ci_low, c.ci_high, c.p_value, c.p_adjusted,
             c.margin, c.equivalence_test, c.eq_low, c.eq_high, c.equivalence_p, c.equivalence_p_adjusted,
             c.family_size, c.verdict)
            for c in sorted(comparisons, key=lambda c: not c.primary)]
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def build_report(
    config_path: str | Path, dataset: str, metrics_csv: str | Path, out_html: str | Path,
    results: str | Path = "results", prepared: str | None = None, device: str = "cpu", allow_missing: bool = False,
    captions: str | Path | None = None, threads: int = 0,
) -> list[Path]:
    """Write out_html, the PNGs, metrics.csv and comparisons.csv beside it; return the written paths.

    `captions` is the folder of the figure captions (<figure>.rst; default workflow/report of the
    working directory); `threads` are torch's for the pictures (0: the job's share of the CPUs).
    Everything is computed before the first file is written, so a report that fails leaves the
    previous one as it was; torch is imported only once the inputs have been checked."""
    from xbml.atomic import atomic_path
    from xbml.reporting.analysis import analyse
    from xbml.reporting.captions import DEFAULT_FOLDER, Captions
    from xbml.reporting.figures import FIGURES
    from xbml.reporting.page import page

    metrics_csv, out_html = Path(metrics_csv), Path(out_html)
    texts = Captions(DEFAULT_FOLDER if captions is None else captions)
    texts.check(FIGURES)  # before the slow part: a missing caption should not cost a report's drawing
    a = analyse(config_path, dataset, metrics_csv, results, prepared, device, allow_missing)
    figures = draw_all(a, texts, threads)
    html_text = page(a, figures)
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
    write_text(out_dir / "comparisons.csv", comparisons_table(a.comparisons).to_csv(index=False))
    written.append(out_dir / "comparisons.csv")
    write_text(out_html, html_text)  # last: its presence marks completion
    written.append(out_html)
    _readable(written)
    return written


def _readable(paths: list[Path]) -> None:
    """Atomic writes start from private temporary files; a report is meant to be shared."""
    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        os.chmod(p, 0o666 & ~umask)


def draw_all(a, captions, threads: int = 0) -> dict:
    """Every figure of FIGURES (xbml.reporting.figures), drawn or a placeholder, with its caption."""
    from xbml.reporting import picture_figures
    from xbml.reporting.figures import FIGURES, charts

    out = {f.name: f for f in [*charts(a), *picture_figures.draw(a, threads)]}
    assert list(out) == list(FIGURES), list(out)
    for f in out.values():
        f.caption = captions.html(f.name, a.dataset, a.config)
    return out

