"""`xbml aggregate` and `xbml report`: how the numbers, statistics and figures reach the page.

Rendering is tested on results trees written by hand (`synthetic`, no training):
- `syn`: baseline, xml (w = 0.3) and a sweep xml_w over w in {0.1, 0.6}, seeds 0-2, with
  validation classes, Snakemake benchmark files and a data version;
- `solo`: the baseline alone, seeds 0-1.
One test (`test_report_draws_the_pictures_of_trained_models`) trains two tiny models, since the
pictures need a real model.pt and embeddings.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from synthetic import DATASET, write_tree

from conftest import PYTHON, ROOT, make_blob_dataset
from xbml.metric_names import TESTED_METRICS
from xbml.reporting.results import METRICS

SEEDS = [0, 1, 2]
METHODS = {"baseline": {}, "xml": {"xml.weight": 0.3}, "xml_w": {"xml.weight": [0.1, 0.6]}}
ITERATIONS = 100  # what synthetic.write_tree logs and summarises


# -- building the trees -------------------------------------------------------------------------
def _write_benchmark(path: Path, seconds: float, rss: float) -> None:
    """A Snakemake benchmark file (its real column layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, rem = divmod(seconds, 3600)
    path.write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        f"{seconds:.4f}\t{int(h)}:{int(rem // 60):02d}:{int(rem % 60):02d}\t{rss:.2f}\t900.1\t{rss - 10:.2f}\t"
        f"{rss - 5:.2f}\t0.00\t1.20\t95.00\t{seconds * 0.9:.2f}\n"
    )


def _provenance(tree: dict) -> None:
    """Benchmarks of every train job and of fetch, and the data version, as the workflow leaves them."""
    from xbml.workflow.plan import expand_runs, load_workflow_config

    bench = tree["results"] / DATASET / "benchmarks"
    for i, run in enumerate(expand_runs(load_workflow_config(tree["config"]), check=False)):
        _write_benchmark(bench / "train" / run.name / f"seed{run.seed}.tsv", 10.0 + i, 500.0 + i)
    _write_benchmark(bench / "fetch.tsv", 3.5, 120.0)
    (tree["results"] / DATASET / "data_version.json").write_text(json.dumps(
        {"dataset": DATASET, "path": f"data/raw/{DATASET}", "dvc_md5": "0123456789abcdef0123456789abcdef.dir",
         "remote": "local", "pushed": True}
    ))


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("reporting_trees")
    syn = write_tree(base / "syn", methods=METHODS, seeds=SEEDS, report={"confidence": 0.9})
    _provenance(syn)
    solo = write_tree(base / "solo", methods={"baseline": {}}, seeds=(0, 1))
    return {"syn": syn, "solo": solo}


def _cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([PYTHON, "-m", "xbml", *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env)


def _aggregate_and_report(t: dict, out: Path, *extra) -> dict:
    """aggregate + report through the CLI, as the workflow runs them."""
    csv_path = t["results"] / DATASET / "metrics.csv"
    agg = _cli("aggregate", "--config", t["config"], "--dataset", DATASET, "--results", t["results"], "--out", csv_path)
    assert agg.returncode == 0, agg.stderr
    html_path = out / "index.html"
    rep = _cli("report", "--config", t["config"], "--dataset", DATASET, "--results", t["results"],
               "--metrics", csv_path, "--out", html_path, *extra)
    assert rep.returncode == 0, rep.stderr
    return {"csv": csv_path, "html": html_path, "stdout": rep.stdout}


@pytest.fixture(scope="module")
def reports(tree, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("reports")
    return {name: _aggregate_and_report(t, out / name) for name, t in tree.items()}


# -- reading the page back -------------------------------------------------------------------------
class Page(HTMLParser):
    """The parts of the report a reader relies on: images, tables by id, findings, ids."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.images, self.tables, self.findings, self.ids, self.selected = [], {}, [], set(), []
        self._table = self._row = self._cell = None
        self._li = None
        self._p = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.images.append(a)
        elif tag == "table":
            self._table = self.tables.setdefault(a.get("id", f"anon{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = [a, ""]
            self._row.append(self._cell)
        elif tag == "li" and "data-metric" in a:
            self._li = [a, ""]
            self.findings.append(self._li)
        elif tag == "p" and "selected-setting" in a.get("class", ""):
            self._p = [a, ""]
            self.selected.append(self._p)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._cell = None
        elif tag == "li":
            self._li = None
        elif tag == "p":
            self._p = None

    def handle_data(self, data):
        for target in (self._cell, self._li, self._p):
            if target is not None:
                target[1] += data


def _run_names(config_path: Path) -> list[str]:
    """Run names in config order, from the plan itself (never spelt out here: the plan owns them)."""
    from xbml.workflow.plan import expand_runs, load_workflow_config

    return list(dict.fromkeys(r.name for r in expand_runs(load_workflow_config(config_path), check=False)))


def _sweep_names(config_path: Path) -> list[str]:
    from xbml.workflow.plan import expand_runs, load_workflow_config

    return list(dict.fromkeys(r.name for r in expand_runs(load_workflow_config(config_path), check=False)
                              if r.method == "xml_w"))


def _page(path: Path) -> Page:
    return Page(path.read_text())


def _recompute(csv_path: Path) -> pd.DataFrame:
    return pd.read_csv(csv_path)


# -- aggregate ------------------------------------------------------------------------------------
def test_aggregate_has_a_row_per_run_seed_and_split_with_every_metric(tree, reports):
    df = pd.read_csv(reports["syn"]["csv"])
    runs = _run_names(tree["syn"]["config"])
    assert len(runs) == 4
    assert len(df) == len(runs) * len(SEEDS) * 2
    assert list(df.columns[:6]) == ["dataset", "run", "method", "seed", "split", "xml.weight"]
    for m, _ in METRICS:
        assert m in df.columns
    for col in ("selected_iteration", "iterations", "train_time_s", "train_wall_time_s"):
        assert col in df.columns
    assert sorted(set(df["run"])) == sorted(runs)
    assert set(df["split"]) == {"val", "test"} and set(df["seed"]) == set(SEEDS)
    sweep = df[df["method"] == "xml_w"]
    assert sorted(set(sweep["xml.weight"])) == [0.1, 0.6]
    assert df[df["method"] != "xml_w"]["xml.weight"].isna().all()
    for row in df.itertuples(index=False):
        folder = tree["syn"]["results"] / DATASET / row.run / f"seed{row.seed}"
        metrics = json.loads((folder / f"metrics_{row.split}.json").read_text())
        for m, _ in METRICS:
            assert getattr(row, m) == metrics[m]  # exact: the CSV keeps every digit
        assert row.eval_num_queries == metrics["num_queries"]  # evaluation bookkeeping, prefixed
        summary = json.loads((folder / "train_summary.json").read_text())
        assert row.selected_iteration == summary["selected_iteration"]
        assert row.iterations == ITERATIONS
        steps = [json.loads(line)["time_s"] for line in (folder / "train_log.jsonl").read_text().splitlines()]
        assert row.train_time_s == pytest.approx(sum(steps), abs=1e-3)
        assert row.train_wall_time_s == summary["wall_time_s_this_process"]
    # the aggregate is written atomically: no temporary files are left beside it
    assert not [p for p in reports["syn"]["csv"].parent.iterdir() if p.name.startswith(".metrics.csv")]


def test_aggregate_names_a_missing_metrics_file(tree, tmp_path):
    config = yaml.safe_load(tree["syn"]["config"].read_text())
    config["seeds"] = [*SEEDS, 9]  # a seed that never ran
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    out = tmp_path / "metrics.csv"
    res = _cli("aggregate", "--config", cfg, "--dataset", DATASET, "--results", tree["syn"]["results"], "--out", out)
    assert res.returncode == 2
    missing = tree["syn"]["results"] / DATASET / "baseline" / "seed9" / "metrics_val.json"
    assert f"metrics file {missing} is missing" in res.stderr
    assert "xbml evaluate" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()


def test_aggregate_rejects_an_unknown_dataset(tree, tmp_path):
    res = _cli("aggregate", "--config", tree["syn"]["config"], "--dataset", "nope", "--results",
               tree["syn"]["results"], "--out", tmp_path / "m.csv")
    assert res.returncode == 2 and "'nope' is not in the workflow config" in res.stderr


# -- report ---------------------------------------------------------------------------------------
def _check_images(page: Page, folder: Path) -> list[str]:
    from PIL import Image

    names = []
    assert page.images, "the report has no figures"
    for img in page.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,"), src[:40]
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
        with Image.open(io.BytesIO(png)) as im:
            assert im.size[0] >= 400 and im.size[1] >= 150
        assert img.get("alt")
        assert img["data-file"] not in names, img["data-file"]  # each figure once
        file = folder / img["data-file"]
        assert file.read_bytes() == png  # the same figure is written beside the page
        names.append(img["data-file"])
    return names


def _not_drawn(text: str) -> dict[str, str]:
    """The page's list of placeholder figures: file -> why."""
    block = re.search(r'<ul id="not-drawn-figures">(.*?)</ul>', text, re.S)
    items = re.findall(r'<li data-file="([^"]+)"><code>[^<]+</code>: (.*?)</li>', block.group(1)) if block else []
    return {name: html.unescape(why) for name, why in items}


def _placeholder_pngs_are_pictures(folder: Path, names) -> None:
    from PIL import Image

    for name in names:
        with Image.open(folder / name) as im:
            im.verify()


def test_report_writes_every_figure_and_shows_or_explains_each(reports):
    """Every file of FIGURES is written (the workflow declares them all); the page shows each
    drawn one once and lists every placeholder with its reason."""
    from xbml.reporting import figure_names

    expected_drawn = {
        "syn": {"metrics_test.png", "metrics_val.png", "paired_differences.png", "sweeps.png", "training_curves.png",
                "validation_curves.png", "regularizer_losses.png"},
        "solo": {"metrics_test.png", "metrics_val.png", "training_curves.png", "validation_curves.png"},
    }
    for name, drawn in expected_drawn.items():
        html_path = reports[name]["html"]
        text = html_path.read_text()
        shown = _check_images(_page(html_path), html_path.parent)
        assert sorted(p.name for p in html_path.parent.glob("*.png")) == sorted(figure_names())
        assert set(shown) == drawn
        missing = _not_drawn(text)
        assert set(missing) == set(figure_names()) - drawn
        _placeholder_pngs_are_pictures(html_path.parent, missing)
        assert missing["retrieval.png"] == "disabled (report.retrieval_queries = 0)"
        assert missing["tsne.png"] == "disabled (report.tsne_classes = 0)"
        assert (html_path.parent / "metrics.csv").read_bytes() == reports[name]["csv"].read_bytes()
        assert "<script" not in text  # self-contained and static
    solo = _not_drawn(reports["solo"]["html"].read_text())
    assert solo["sweeps.png"] == "no method of the workflow config sweeps a hyper-parameter"
    assert solo["regularizer_losses.png"] == "no run of this report trains with a regulariser"
    assert solo["prototype_maps.png"] == "no run of this report trains with XML"
    assert solo["paired_differences.png"] == "only one run, 'baseline': nothing to compare"
    assert _not_drawn(reports["syn"]["html"].read_text())["prototype_maps.png"].startswith("cannot draw: ")


def _figcaption(text: str, name: str) -> str:
    stem = name.removesuffix(".png")
    return re.search(rf'<figure id="fig-{stem}">.*?<figcaption>(.*?)</figcaption>', text, re.S).group(1)


def test_figure_captions_come_from_the_workflow_caption_files(reports):
    from xbml.reporting.captions import rst_to_html

    text = reports["syn"]["html"].read_text()
    paired = _figcaption(text, "paired_differences.png")
    assert paired.startswith("Paired differences to the baseline <strong>baseline</strong>: ")
    assert "at confidence 0.9," in paired and "below 1 \u2212 0.9 too" in paired
    assert "<code>comparisons.csv</code>" in paired
    assert "<em>" not in paired and "**" not in paired and "``" not in paired
    curves = _figcaption(text, "training_curves.png")
    assert "<code>loss</code> is the optimised total" in curves and "<code>loss_xml</code>" in curves
    assert "<strong>test classes</strong>" in _figcaption(text, "metrics_test.png")
    assert "of syn over training" in _figcaption(text, "regularizer_losses.png")  # {{ snakemake.wildcards.dataset }}
    assert "{{" not in text and "Placeholders" not in text and "Caption of" not in text  # the .rst comments
    for name in ("metrics_test.png", "sweeps.png", "training_curves.png"):
        rst = (ROOT / "workflow" / "report" / name.replace(".png", ".rst")).read_text()
        caption = rst_to_html(rst, DATASET, {"baseline": "baseline", "report": {"confidence": 0.9}})
        assert _figcaption(text, name).startswith(caption), name


def test_report_fails_clearly_without_a_caption_file(tree, reports, tmp_path):
    captions = tmp_path / "captions"
    shutil.copytree(ROOT / "workflow" / "report", captions)
    (captions / "sweeps.rst").unlink()
    out = tmp_path / "r" / "index.html"
    t = tree["syn"]
    res = _cli("report", "--config", t["config"], "--dataset", DATASET, "--results", t["results"],
               "--metrics", reports["syn"]["csv"], "--out", out, "--captions", captions)
    assert res.returncode == 2
    assert f"caption file {captions / 'sweeps.rst'} is missing" in res.stderr and "--captions" in res.stderr
    assert "Traceback" not in res.stderr and not out.parent.exists()
    # the default folder is workflow/report of the working directory, not of the package
    res = _cli("report", "--config", t["config"], "--dataset", DATASET, "--results", t["results"],
               "--metrics", reports["syn"]["csv"], "--out", out, cwd=tmp_path)
    assert res.returncode == 2 and "caption file workflow/report/metrics_test.rst is missing" in res.stderr


def _cells(page: Page, table: str) -> list[dict]:
    rows = page.tables[table]
    return [{"attrs": a, "text": t.strip()} for row in rows for a, t in row if "data-metric" in a]


def test_report_tables_hold_the_numbers_of_the_csv(reports):
    for name in ("syn", "solo"):
        df = _recompute(reports[name]["csv"])
        page = _page(reports[name]["html"])
        for split in ("test", "val"):
            cells = _cells(page, f"summary-{split}")
            runs = df["run"].unique()
            assert len(cells) == len(runs) * len(METRICS)
            for c in cells:
                a = c["attrs"]
                values = df[(df["run"] == a["data-run"]) & (df["split"] == split)][a["data-metric"]]
                mean, std = values.mean(), values.std(ddof=1)
                assert float(a["data-mean"]) == pytest.approx(mean, abs=1e-12)
                assert float(a["data-std"]) == pytest.approx(std, abs=1e-12)
                assert c["text"] == f"{mean:.4f} \u00b1 {std:.4f}"
        # the full table, cell for cell
        rows = page.tables["metrics-csv"]
        with open(reports[name]["csv"], newline="") as f:
            csv_rows = list(csv.reader(f))
        assert [[t for _, t in r] for r in rows] == csv_rows


def test_report_states_each_comparison_with_the_statistics_of_the_csv(tree, reports):
    from xbml.reporting.statistics import compare, describe, holm_adjust
    from xbml.workflow.plan import load_workflow_config

    config = load_workflow_config(tree["syn"]["config"])
    df = _recompute(reports["syn"]["csv"])
    page = _page(reports["syn"]["html"])
    others = _run_names(tree["syn"]["config"])[1:]

    def per(r, split, metric):
        return {int(s): v for s, v in df[(df.run == r) & (df.split == split)][["seed", metric]].values}

    # the declared primary comparison (synthetic.write_tree: the first run's test MAP@R) is a family of its
    # own; every other tested run x metric is exploratory, one Holm family per split
    primary = ("xml", "test", "map_at_r")
    assert config["report"]["primary"] == {"run": "xml", "metric": "map_at_r", "split": "test"}
    family = holm_adjust([compare(run, "baseline", m, split, per(run, split, m), per("baseline", split, m),
                                  config["report"]["confidence"],
                                  family="primary" if (run, split, m) == primary else "exploratory")
                          for run in others for split in ("test", "val") for m in TESTED_METRICS])
    by_key = {(c.method, c.split, c.metric): c for c in family}

    def stats(run, split="test", metric="map_at_r"):
        return by_key[run, split, metric]

    # the summary: xml itself and the sweep's setting selected on validation MAP@R
    val = df[df.split == "val"].groupby("run")["map_at_r"].mean()
    chosen = val[_sweep_names(tree["syn"]["config"])].idxmax()
    findings = {a["data-run"]: text for a, text in page.findings}
    assert set(findings) == {"xml", chosen}
    for run, text in findings.items():
        c = stats(run)
        a = next(a for a, _ in page.findings if a["data-run"] == run)
        assert float(a["data-mean"]) == pytest.approx(c.mean, abs=1e-12)
        assert (float(a["data-low"]), float(a["data-high"])) == pytest.approx((c.ci_low, c.ci_high), abs=1e-12)
        assert describe(c, "test MAP@R") in text
        assert f"{c.mean:+.3f}" in text and "over 3 seeds" in text and "exact sign-flip test p" in text
        # 3 seeds: the exact test cannot go below 2/2^3 = 0.25, so nothing is shown either way, and the page says why
        assert c.verdict == "inconclusive" and a["data-verdict"] == "inconclusive"
        assert "inconclusive" in text and "with 3 seeds the smallest possible p is 2/2^3 = 0.25" in text
    assert "Setting selected on validation MAP@R" in findings[chosen]
    # the comparison tables: per-seed differences and their statistics, for every run and metric
    for split in ("test", "val"):
        rows = page.tables[f"comparison-{split}"]
        header = [t for _, t in rows[0]]
        assert header[2] == "family" and header[3:6] == [f"\u0394 seed {s}" for s in SEEDS]
        for row in rows[1:]:
            cells = dict(zip(header, [t for _, t in row]))
            attrs = next(a for a, _ in row if "data-mean" in a)
            c = stats(attrs["data-run"], split, attrs["data-metric"])
            assert [cells[f"\u0394 seed {s}"] for s in SEEDS] == [f"{d:+.4f}" for d in c.differences]
            assert cells["mean \u0394"] == f"{c.mean:+.4f}"
            level = round(config["report"]["confidence"] * 100)  # 90: the tree's, not the default
            assert cells[f"{level}% t interval"] == f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]"
            assert cells["exact sign-flip test p"] == f"{c.p_value:.3f}"
            assert cells["Holm-adjusted p"] == f"{c.p_adjusted:.3f}"
            assert cells["verdict"] == c.verdict and cells["family"] == c.family
    comparisons = pd.read_csv(reports["syn"]["html"].parent / "comparisons.csv")
    assert len(comparisons) == len(family)
    for row in comparisons.itertuples(index=False):
        c = stats(row.run, row.split, row.metric)
        assert (row.n_seeds, row.verdict) == (c.n, c.verdict)
        assert (row.mean_diff, row.ci_low, row.ci_high, row.p_value, row.p_adjusted) == pytest.approx(
            (c.mean, c.ci_low, c.ci_high, c.p_value, c.p_adjusted), abs=1e-12)
    # the sweep: selection on validation only, its test result labelled as such
    (a, text), = page.selected
    assert a["data-run"] == chosen
    test_values = df[(df.run == chosen) & (df.split == "test")]["map_at_r"]
    assert "Test result of the selected setting" in text
    assert f"{test_values.mean():.4f} \u00b1 {test_values.std(ddof=1):.4f}" in text


def test_report_environment_and_sections(tree, reports):
    from xbml.reporting import environment

    text = reports["syn"]["html"].read_text()
    page = _page(reports["syn"]["html"])
    assert {"summary", "primary", "regularizers", "regularizer-diagnostics", "results", "comparison", "sweeps",
            "training", "pictures", "not-drawn", "environment", "data"} <= page.ids
    xml_runs = re.findall(r'<ul class="regularizer-diagnostics" id="regularizer-diagnostics">(.*?)</ul>', text, re.S)[0]
    assert re.findall(r'<li data-run="([^"]+)" data-regularizer="xml">', xml_runs) == _run_names(tree["syn"]["config"])[1:]
    assert "0123456789abcdef0123456789abcdef.dir" in text  # the DVC hash of the data
    libraries = {t[0][1].strip(): t[1][1].strip() for t in page.tables["libraries"][1:]}
    for lib in ("torch", "torchvision", "faiss", "pytorch-metric-learning", "numpy", "snakemake", "dvc"):
        assert lib in libraries
    bench = {row[0][1]: row for row in page.tables["benchmarks"][1:]}
    assert set(bench) == {"train", "fetch"}
    assert bench["train"][1][1] == str(4 * len(SEEDS))  # one job per run and seed
    git = environment.git_state(ROOT)  # the report ran in ROOT
    if git["commit"]:
        state = "dirty: uncommitted changes to tracked files" if git["dirty"] else "clean"
        assert f'Commit <code id="git-commit">{git["commit"]}</code> ({state}).' in text
    else:
        assert f"Code commit unknown ({html.escape(git['note'], quote=True)})" in text
    assert "xml.weight" in text and "confidence: 0.9" in text  # the workflow config


def test_report_of_a_baseline_only_dataset(reports):
    page = _page(reports["solo"]["html"])
    text = reports["solo"]["html"].read_text()
    assert "comparison" not in page.ids and "sweeps" not in page.ids and "regularizers" not in page.ids
    assert not page.findings
    assert "Only one method, <b>baseline</b>, was run: there is nothing to compare it with." in text
    assert not pd.read_csv(reports["solo"]["html"].parent / "comparisons.csv").shape[0]


def test_report_is_deterministic(tree, reports, tmp_path):
    """Everything but the pictures' pixels is identical on a second run (the statistics are exact)."""
    from xbml.reporting.report import build_report

    again = tmp_path / "index.html"
    build_report(tree["solo"]["config"], DATASET, reports["solo"]["csv"], again, tree["solo"]["results"],
                 captions=ROOT / "workflow" / "report")
    strip = lambda t: re.sub(r'src="data:image/png;base64,[^"]*"', 'src=""', t)  # noqa: E731
    first = strip(reports["solo"]["html"].read_text())
    second = strip(again.read_text())
    first = first.replace(str(reports["solo"]["html"].parent), "")
    assert first == second


def test_report_with_only_a_test_split_and_pictures_disabled(tmp_path):
    """A figure that does not apply is still written (workflows declare the files) and the page
    says why it is missing instead of showing it."""
    from xbml.reporting import figure_names
    from xbml.reporting.report import build_report
    from xbml.reporting.tables import aggregate_rows
    from xbml.workflow.plan import load_workflow_config

    t = write_tree(tmp_path / "tree", methods={"baseline": {}}, seeds=(0, 1), splits=("test",))
    csv_path = tmp_path / "metrics.csv"
    table = aggregate_rows(load_workflow_config(t["config"]), DATASET, t["results"])
    assert set(table["split"]) == {"test"}
    table.to_csv(csv_path, index=False)
    out = tmp_path / "report" / "index.html"
    build_report(t["config"], DATASET, csv_path, out, t["results"], captions=ROOT / "workflow" / "report")
    page = _page(out)
    assert "summary-test" in page.tables and "summary-val" not in page.tables
    text = out.read_text()
    assert "not drawn: disabled (report.retrieval_queries = 0)" in text
    assert "not drawn: disabled (report.tsne_classes = 0)" in text
    assert _not_drawn(text)["metrics_val.png"] == "the metrics table has no val rows"
    assert sorted(p.name for p in out.parent.glob("*.png")) == sorted(figure_names())
    _check_images(page, out.parent)
    assert {img["data-file"] for img in page.images} == {"metrics_test.png", "training_curves.png"}


def test_report_fails_clearly_without_the_metrics_table(tree, tmp_path):
    t = tree["solo"]
    res = _cli("report", "--config", t["config"], "--dataset", DATASET, "--results", t["results"],
               "--metrics", tmp_path / "none.csv", "--out", tmp_path / "r" / "index.html")
    assert res.returncode == 2
    assert "metrics table" in res.stderr and "xbml aggregate" in res.stderr
    assert not (tmp_path / "r" / "index.html").exists()


# -- from really trained models ----------------------------------------------------------------
TRAIN_CONFIG = {
    "data": {"image_size": 32, "max_classes": 0},
    "model": {"backbone": "glyph_convnet", "embedding_dim": 16},
    "loss": {"name": "multi_similarity"},
    "sampler": {"classes_per_batch": 4, "images_per_class": 4},
    "optim": {"lr": 0.003},
    "train": {"iterations": 6, "checkpoint_every": 3, "eval_every": 3, "progress": False, "threads": 1},
    "eval": {"batch_size": 128},
}


def make_query_gallery_dataset(out: Path) -> Path:
    """Blobs whose test classes are split into query and gallery images (In-Shop protocol)."""
    from xbml.datasets.manifest import Manifest, read_manifest, write_manifest

    make_blob_dataset(out, classes=16, per_class=6, val_fraction=0.25, seed=3)
    m = read_manifest(out)
    roles = np.array(["both"] * len(m), dtype=object)
    for c in np.unique(m.labels[m.splits == "test"]):
        idx = np.flatnonzero((m.labels == c) & (m.splits == "test"))
        roles[idx[: len(idx) // 2]] = "query"
        roles[idx[len(idx) // 2 :]] = "gallery"
    m.info["protocol"] = "query_gallery"
    write_manifest(out, Manifest(m.images, m.labels, m.splits, roles, m.folds, info=m.info))
    return out


def test_report_draws_the_pictures_of_trained_models(tmp_path):
    """The pictures need what only training leaves: model.pt (prototypes, image config) and the
    test embeddings; the smallest such tree: a baseline and an XML run, one seed, six iterations."""
    from xbml.cli import main
    from xbml.config import load_config
    from xbml.training.trainer import train
    from xbml.workflow.plan import expand_runs, validate_config

    prepared = make_query_gallery_dataset(tmp_path / "prepared")
    train_cfg = tmp_path / "train.yaml"
    train_cfg.write_text(yaml.safe_dump({**TRAIN_CONFIG, "data": {**TRAIN_CONFIG["data"], "prepared": str(prepared)}}))
    workflow = {
        "datasets": {DATASET: {"train_config": str(train_cfg), "val_fraction": 0.25}},
        "methods": {"baseline": {}, "xml": {"xml.weight": 0.3}}, "baseline": "baseline", "seeds": [0],
        "report": {"retrieval_queries": 3, "retrieval_k": 3, "tsne_classes": 4},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    config = validate_config(workflow)
    results = tmp_path / "results"
    for run in expand_runs(config, check=False):
        folder = results / Path(run.folder).relative_to("results")
        train(load_config(str(train_cfg), [*run.overrides, f"seed={run.seed}"]), folder, threads=1)
        for split in config["eval_splits"]:
            emb = folder / f"embeddings_{split}.npz"
            assert main(["embed", "--model", str(folder / "model.pt"), "--split", split, "--out", str(emb),
                         "--threads", "1", "--no-progress"]) == 0
            assert main(["evaluate", str(emb), "--threads", "1", "--out", str(folder / f"metrics_{split}.json")]) == 0
    made = _aggregate_and_report({"config": config_path, "results": results}, tmp_path / "report")
    text = made["html"].read_text()
    shown = _check_images(_page(made["html"]), made["html"].parent)
    assert {"retrieval.png", "tsne.png", "prototype_maps.png", "prototype_usage.png"} <= set(shown)
    assert "Protocol: query vs gallery; 3 neighbours per query. Left baseline, right xml" in text
    assert "Run xml, seed 0, prototypes of its last iteration: K = " in text
    assert not set(_not_drawn(text)) & set(shown)


# -- in a browser ---------------------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")
PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-total', imgs.length);
  document.body.setAttribute('data-images-loaded', ok);
  var cells = document.querySelectorAll('#summary-test td[data-metric="map_at_r"]');
  var shown = {};
  Array.prototype.forEach.call(cells, function (c) { shown[c.getAttribute('data-run')] = c.innerText; });
  document.body.setAttribute('data-rendered-map', JSON.stringify(shown));
});
</script>"""


def _chromium(*args, profile: Path) -> subprocess.CompletedProcess:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.mark.browser
@pytest.mark.parametrize("name", ["syn", "solo"])
def test_report_renders_in_a_headless_browser(reports, name, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("headless chromium is not installed at /usr/bin/chromium (CI installs it: apt-get install chromium)")
    from PIL import Image

    html_path = reports[name]["html"]
    probe = tmp_path / "index.html"  # a test copy with a probe script; the report itself has none
    probe.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium("--virtual-time-budget=15000", "--dump-dom", probe.as_uri(), profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:500]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    total = int(attrs["data-images-total"])
    assert total == len(Page(html_path.read_text()).images) and total >= 4
    assert int(attrs["data-images-loaded"]) == total, "some figures did not load in the browser"
    df = pd.read_csv(reports[name]["csv"])
    rendered = json.loads(html.unescape(attrs["data-rendered-map"]))
    test = df[df["split"] == "test"].groupby("run")["map_at_r"]
    assert rendered == {r: f"{m:.4f} \u00b1 {s:.4f}" for r, m, s in zip(test.mean().index, test.mean(), test.std(ddof=1))}

    shot = tmp_path / f"{name}_screenshot.png"
    res = _chromium("--window-size=1400,4000", f"--screenshot={shot}", html_path.as_uri(), profile=tmp_path / "profile2")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1400, 4000)
        grey = np.asarray(im.convert("L"), dtype=np.float32)
    assert grey.std() > 10, "the screenshot is blank"
    assert (grey < 200).mean() > 0.02, "the screenshot shows almost nothing"
    keep = os.environ.get("XBML_SCREENSHOT_DIR")
    if keep:  # for a human to look at
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
