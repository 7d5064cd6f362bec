"""Metrics are checked where they are read: `xbml aggregate` and `xbml report` on hand-written
results trees (no training) stop with a clear error, or with --allow-missing say what is missing."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from synthetic import DATASET, aggregate, imported_modules, report, write_tree

SEEDS = (0, 1, 2, 3, 4, 5)
OLD = "previous output, must survive a failed run\n"


def _metrics_file(tree, run="xml", seed=2, split="test"):
    return tree["results"] / DATASET / run / f"seed{seed}" / f"metrics_{split}.json"


def _edit_metric(path, key, raw_json: str):
    """Set `key` to a raw JSON token (NaN, Infinity, "0.5", ...) the way a buggy writer would."""
    data = json.loads(path.read_text())
    data[key] = "__placeholder__"
    path.write_text(json.dumps(data).replace('"__placeholder__"', raw_json))


def _failed_cleanly(res, *phrases):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    for phrase in phrases:
        assert phrase in res.stderr, (phrase, res.stderr)


@pytest.fixture
def tree(tmp_path):
    return write_tree(tmp_path / "tree", seeds=SEEDS)


@pytest.fixture
def old_csv(tmp_path):
    out = tmp_path / "metrics.csv"
    out.write_text(OLD)
    return out


# -- aggregate --------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, shown, problem", [
    ("NaN", "nan", "not finite"),
    ("Infinity", "inf", "not finite"),
    ("1.5", "1.5", "outside [0, 1]"),
    ("-0.01", "-0.01", "outside [0, 1]"),
    ('"0.5"', '"0.5"', "not a number"),
    ("null", "null", "missing"),
    ("true", "true", "not a number"),
])
def test_aggregate_stops_on_an_invalid_metric_and_leaves_the_table_alone(tree, old_csv, raw, shown, problem):
    path = _metrics_file(tree)
    _edit_metric(path, "map_at_r", raw)
    res = aggregate(tree, old_csv)
    _failed_cleanly(res, f"metrics file {path}: key 'map_at_r' is {shown} ({problem}",
                    "python -m xbml evaluate", "--allow-missing")
    assert old_csv.read_text() == OLD


def test_aggregate_stops_on_an_absent_key_and_a_binary_metrics_file(tree, tmp_path):
    path = _metrics_file(tree, "baseline", 4, "val")
    data = json.loads(path.read_text())
    del data["recall_at_8"]
    path.write_text(json.dumps(data))
    out = tmp_path / "new.csv"
    _failed_cleanly(aggregate(tree, out), f"metrics file {path}: key 'recall_at_8' is absent")
    assert not out.exists()
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff binary")
    _failed_cleanly(aggregate(tree, out), f"metrics file {path} is not UTF-8 text", "xbml evaluate")
    assert not out.exists()


def test_aggregate_stops_on_a_missing_seed(tree, old_csv):
    path = _metrics_file(tree, "xml", 5, "val")
    path.unlink()
    _failed_cleanly(aggregate(tree, old_csv), f"metrics file {path} is missing", "xbml evaluate")
    assert old_csv.read_text() == OLD


def test_aggregate_allow_missing_leaves_out_a_missing_seed_and_writes_nan_for_an_invalid_value(tree, tmp_path):
    missing = _metrics_file(tree, "xml", 5, "test")
    missing.unlink()
    invalid = _metrics_file(tree, "baseline", 1, "test")
    _edit_metric(invalid, "precision_at_1", "NaN")
    out = tmp_path / "metrics.csv"
    res = aggregate(tree, out, "--allow-missing")
    assert res.returncode == 0, res.stderr
    assert f"xml seed 5 (test): no metrics file {missing}: row left out" in res.stderr
    assert f"baseline seed 1 (test): precision_at_1 = nan (not finite) in {invalid}: written as NaN" in res.stderr
    df = pd.read_csv(out)
    assert len(df) == 2 * len(SEEDS) * 2 - 1
    assert df[(df.run == "xml") & (df.seed == 5) & (df.split == "test")].empty
    row = df[(df.run == "baseline") & (df.seed == 1) & (df.split == "test")].iloc[0]
    assert math.isnan(row["precision_at_1"]) and row["map_at_r"] == json.loads(invalid.read_text())["map_at_r"]


# -- report -----------------------------------------------------------------------------------------
@pytest.fixture
def table(tree, tmp_path):
    out = tmp_path / "metrics.csv"
    assert aggregate(tree, out).returncode == 0
    return out


@pytest.fixture
def old_page(tmp_path):
    page = tmp_path / "report" / "index.html"
    page.parent.mkdir()
    page.write_text(OLD)
    return page


@pytest.mark.parametrize("content, phrase", [
    (b"", "is empty"),
    (b"\xff\xfe\x00d\x00a\x00t\x00a", "is not UTF-8 text"),
    (b"PK\x03\x04\x14\x00\x08\x08\x08\x00\xa0binary", "is not UTF-8 text"),
])
def test_report_rejects_an_unreadable_metrics_table(tree, tmp_path, old_page, content, phrase):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    _failed_cleanly(report(tree, bad, old_page), f"metrics table {bad} {phrase}", "xbml aggregate")
    assert old_page.read_text() == OLD
    assert not (old_page.parent / "comparisons.csv").exists()


def test_a_refused_report_stops_before_importing_torch(tree, tmp_path, old_page):
    """The inputs are checked before the slow part: a refused report costs about 1 CPU-s, not the
    4 it took while torch (for the pictures) was imported first."""
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"")
    res = report(tree, bad, old_page, python_flags=("-X", "importtime"))
    assert res.returncode == 2 and f"metrics table {bad} is empty" in res.stderr, res.stderr[-2000:]
    imported = imported_modules(res.stderr)
    assert "pandas" in imported  # the probe sees the imports
    assert not {"torch", "matplotlib", "seaborn"} & imported, sorted({"torch", "matplotlib", "seaborn"} & imported)


@pytest.mark.parametrize("edit, phrase", [
    (lambda lines: lines[:3] + [lines[3] + ",0.5,extra"] + lines[4:], "is ragged: line 4 has"),
    (lambda lines: lines[:5] + [",".join(lines[5].split(",")[:4])] + lines[6:], "is ragged: line 6 has 4 fields"),
])
def test_report_rejects_a_ragged_metrics_table(tree, table, old_page, edit, phrase):
    lines = table.read_text().splitlines()
    table.write_text("\n".join(edit(lines)) + "\n")
    _failed_cleanly(report(tree, table, old_page), f"metrics table {table} {phrase}")
    assert old_page.read_text() == OLD


def test_report_rejects_an_out_of_range_value_in_the_table(tree, table, old_page):
    df = pd.read_csv(table)
    df.loc[3, "r_precision"] = 1.7
    df.to_csv(table, index=False)
    row = df.loc[3]
    _failed_cleanly(report(tree, table, old_page),
                    f"data row 4 ({row['run']} seed {row['seed']}, {row['split']}): r_precision = 1.7 is not a finite "
                    "number in [0, 1]")
    assert old_page.read_text() == OLD


def test_report_stops_on_missing_seeds_unless_allowed_and_then_names_them(tree, table, old_page):
    df = pd.read_csv(table)
    df = df[~((df.run == "xml") & (df.seed == 3) & (df.split == "test"))]
    df.loc[df.index[(df.run == "baseline") & (df.seed == 0) & (df.split == "test")], "map_at_r"] = float("nan")
    df.to_csv(table, index=False)
    res = report(tree, table, old_page)
    _failed_cleanly(res, "xml seed 3 (test): no row in the metrics table", "baseline seed 0 (test): map_at_r NaN",
                    "--allow-missing")
    assert old_page.read_text() == OLD

    res = report(tree, table, old_page, "--allow-missing")
    assert res.returncode == 0, res.stderr
    text = old_page.read_text()
    warning = text[text.index('id="missing-seeds"'):text.index("</div>", text.index('id="missing-seeds"'))]
    assert "Warning: 2 configured run/seed/split combination(s) have missing or NaN metrics" in warning
    assert "xml seed 3 (test): no row in the metrics table" in warning
    assert "baseline seed 0 (test): map_at_r NaN" in warning
    assert text.index('id="missing-seeds"') < text.index('id="primary"')  # before any verdict
    comparisons = pd.read_csv(old_page.parent / "comparisons.csv")
    n = comparisons.set_index(["run", "split", "metric"])["n_seeds"]
    assert n["xml", "test", "map_at_r"] == len(SEEDS) - 2  # seed 3 (no row) and seed 0 (baseline NaN)
    assert n["xml", "test", "r_precision"] == len(SEEDS) - 1
    assert n["xml", "val", "map_at_r"] == len(SEEDS)
