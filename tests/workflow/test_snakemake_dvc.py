"""The product as users run it: real Snakemake and DVC on a tiny config, in a throw-away repository.

Both front doors share one state: whichever ran, the other finds nothing to redo."""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml

from workflow_copy import make_copy, run, tiny_config
from xbml.workflow.data_version import content_hash

pytestmark = pytest.mark.slow

METRICS = ("map_at_r", "r_precision", "precision_at_1", "recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8")
RUNS = ("results/glyphs/baseline/seed0", "results/glyphs/xml/seed0")


def _metrics(repo, split="test"):
    out = {}
    for path in sorted((repo / "results/glyphs").glob(f"*/seed*/metrics_{split}.json")):
        data = json.loads(path.read_text())
        out[str(path.relative_to(repo))] = {k: data[k] for k in METRICS}
    return out


def _nothing_to_do(repo) -> None:
    out = run(["snakemake", "-n", "--cores", "2", "all"], repo)
    assert "Nothing to be done" in out.stdout + out.stderr, out.stdout + out.stderr


def _dvc_clean(repo) -> None:
    status = json.loads(run(["dvc", "status", "--json"], repo).stdout or "{}")
    assert status == {}, status


def _commit_all(repo, message) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", message], repo)


@pytest.fixture(scope="module")
def finished_repo(tmp_path_factory):
    repo = make_copy(tmp_path_factory.mktemp("repo"), tiny_config())
    run(["snakemake", "--cores", "2", "all"], repo)
    return repo


@pytest.fixture(scope="module")
def repro_after_snakemake(finished_repo):
    """`dvc repro` on top of a Snakemake run, then everything committed as a user would."""
    repo = finished_repo
    models = {r: (repo / r / "model.pt").stat().st_mtime_ns for r in RUNS}
    start = time.perf_counter()
    out = run(["dvc", "repro"], repo)
    seconds = time.perf_counter() - start
    _commit_all(repo, "results of the tiny experiment")
    return {"out": out.stdout + out.stderr, "seconds": seconds, "models": models}


def test_snakemake_runs_the_whole_dag_and_writes_the_report(finished_repo):
    repo = finished_repo
    report = repo / "reports/glyphs"
    assert (report / "index.html").stat().st_size > 0
    assert (report / "metrics.csv").exists()
    assert list(report.glob("*.png"))
    metrics = _metrics(repo)
    assert set(metrics) == {f"{r}/metrics_test.json" for r in RUNS}
    for values in metrics.values():
        assert all(0.0 <= v <= 1.0 for v in values.values())
    # every rule left its log where Snakemake said it would
    assert (repo / "logs/glyphs/train/xml/seed0.log").exists()
    assert (repo / "results/glyphs/benchmarks/train/xml/seed0.tsv").exists()


def test_run_json_names_the_run_in_typed_values(finished_repo):
    info = json.loads((finished_repo / "results/glyphs/xml/seed0/run.json").read_text())
    assert (info["dataset"], info["method"], info["run"], info["seed"]) == ("glyphs", "xml", "xml", 0)
    assert info["swept"] == {}
    assert info["config"]["xml"]["weight"] == 0.1 and info["config"]["train"]["iterations"] == 40
    assert info["config"]["data"]["prepared"] == "data/prepared/glyphs"


def test_second_run_has_nothing_to_do(finished_repo):
    out = run(["snakemake", "--cores", "2", "all"], finished_repo)
    assert "Nothing to be done" in out.stdout + out.stderr


def test_dvc_repro_after_snakemake_retrains_nothing_and_leaves_dvc_status_clean(repro_after_snakemake, finished_repo):
    repo, done = finished_repo, repro_after_snakemake
    assert "Nothing to be done" in done["out"], done["out"]
    assert done["seconds"] < 120, done["seconds"]
    assert {r: (repo / r / "model.pt").stat().st_mtime_ns for r in RUNS} == done["models"]
    _dvc_clean(repo)
    _nothing_to_do(repo)  # DVC's saving into its cache left Snakemake's state alone


def test_dataset_is_versioned_by_one_owner_and_a_fresh_clone_pulls_a_finished_state(
    repro_after_snakemake, finished_repo, tmp_path
):
    repo = finished_repo
    receipt = json.loads((repo / "results/glyphs/data_version.json").read_text())
    assert receipt["dvc_md5"] and receipt["dvc_md5"].endswith(".dir")
    assert receipt["pushed"] is True and receipt["dvc_file"] == "data/raw/glyphs.dvc"
    # one DVC owner per path: `dvc add` for the raw folder, the dvc.yaml stage for the rest
    lock = (repo / "dvc.lock").read_text()
    assert "data/raw/glyphs" not in lock and "results/glyphs" in lock
    assert "data/raw/glyphs.dvc" in run(["git", "ls-files"], repo).stdout

    run(["dvc", "push"], repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "data/raw/glyphs").exists() and not (clone / "results").exists()
    assert (clone / "data/README.md").exists() and (clone / "reports/README.md").exists()
    # the default remote is a folder inside the original checkout: point the clone at it
    run(["dvc", "remote", "modify", "--local", "local", "url", str(repo / "data/dvc-remote")], clone)
    run(["dvc", "pull"], clone)
    assert content_hash(clone / "data/raw/glyphs") == content_hash(repo / "data/raw/glyphs")
    assert _metrics(clone) == _metrics(repo)
    # DVC keeps no mtimes: one `--touch` (the README's step after a pull) orders them, running nothing
    touched = run(["snakemake", "--touch", "--cores", "1", "all"], clone)
    assert "train" in touched.stdout + touched.stderr
    assert _metrics(clone) == _metrics(repo)
    _nothing_to_do(clone)
    _dvc_clean(clone)


def test_dvc_metrics_and_plots_show_the_runs(repro_after_snakemake, finished_repo):
    repo = finished_repo
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    metrics = shown[""]["data"]["metrics/glyphs/metrics.json"]["data"]
    assert set(metrics) == {"baseline", "xml"}
    for name, values in metrics.items():
        assert values["seeds"] == 1
        assert values["test"]["map_at_r"] == pytest.approx(_metrics(repo)[f"results/glyphs/{name}/seed0/metrics_test.json"]["map_at_r"], abs=1e-6)
    out = run(["dvc", "plots", "show", "--json"], repo)
    assert "No plots were loaded" not in out.stdout + out.stderr
    plots = json.loads(out.stdout)
    assert not plots.get("errors"), plots["errors"]
    assert set(plots["data"]) == {
        "metrics/glyphs/runs.csv",
        *(f"metrics/glyphs/{kind}_curves/{run}_seed0.csv" for kind in ("train", "val") for run in ("baseline", "xml")),
    }
    curve = plots["data"]["metrics/glyphs/val_curves/xml_seed0.csv"][0]["content"]
    assert curve["encoding"]["x"]["field"] == "iteration" and '"field": "map_at_r"' in json.dumps(curve)
    assert [row["iteration"] for row in curve["data"]["values"]] == ["20", "40"]  # every validation


def test_dvc_repro_from_scratch_then_snakemake_and_dvc_exp(finished_repo, tmp_path):
    repo = make_copy(tmp_path / "repo", tiny_config(pictures=False))  # the metrics do not depend on them
    run(["dvc", "repro"], repo)
    _nothing_to_do(repo)
    _dvc_clean(repo)
    assert _metrics(repo) == _metrics(finished_repo)  # same commands, same numbers
    page = (repo / "reports/glyphs/index.html").read_text()
    for name in ("retrieval", "tsne", "prototype_maps", "prototype_usage"):  # tiny_config(pictures=False)
        assert re.search(rf"<code>{name}.png</code>: disabled \(report\.\w+ = 0\)", page), name
    _commit_all(repo, "tiny experiment by dvc repro")
    kept = (repo / "results/glyphs/xml/seed0/model.pt").stat().st_mtime_ns

    # a params value of config/config.yaml; evaluating the test split only retrains nothing
    run(["dvc", "exp", "run", "-n", "test-only", "-S", "config/config.yaml:eval_splits=[test]"], repo)
    assert (repo / "results/glyphs/xml/seed0/model.pt").stat().st_mtime_ns == kept
    assert yaml.safe_load((repo / "config/config.yaml").read_text())["eval_splits"] == ["test"]
    exp_metrics = json.loads((repo / "metrics/glyphs/metrics.json").read_text())
    assert set(exp_metrics["xml"]) == {"test", "seeds"}
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    exps = {r["name"]: r["data"] for c in shown for e in (c.get("experiments") or []) for r in e["revs"]}
    assert set(exps) == {"test-only"}, exps
    data = exps["test-only"]
    assert data["params"]["config/config.yaml"]["data"]["eval_splits"] == ["test"]
    assert data["metrics"]["metrics/glyphs/metrics.json"]["data"] == exp_metrics
    _nothing_to_do(repo)
    _dvc_clean(repo)

    # a changed training setting retrains, and everything below the training follows it
    cfg = yaml.safe_load((repo / "config/config.yaml").read_text())
    cfg["datasets"]["glyphs"]["overrides"]["train.iterations"] += 1
    (repo / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    planned = run(["snakemake", "-n", "--cores", "2", "all"], repo).stdout
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", planned.split("Job stats:")[1].split("\n\n")[0], re.MULTILINE))
    assert jobs == {"train": "2", "embed_evaluate": "2", "aggregate": "1", "dvc_curves": "2",
                    "dvc_metrics": "1", "report": "1", "all": "1", "total": "10"}, planned


def test_snakemake_report_bundles_the_report(finished_repo):
    """The zip holds the page and every figure it shows, byte for byte, and every placeholder."""
    import base64
    import re
    import zipfile

    out = finished_repo / "snakemake-report.zip"
    run(["snakemake", "--report", str(out)], finished_repo)
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        # Snakemake stores each report() output under a hashed folder
        assert "snakemake-report/report.html" in names, names
        assert any(n.endswith("/index.html") for n in names) and any(n.endswith("/metrics.csv") for n in names), names
        bundled = {}
        for n in names:
            if n.endswith(".png"):
                bundled.setdefault(n.rsplit("/", 1)[-1], []).append(z.read(n))
        page = (finished_repo / "reports/glyphs/index.html").read_text()
        images = re.findall(r'<img src="data:image/png;base64,([^"]+)"[^>]*data-file="([^"]+)"', page)
        assert len(images) == page.count("<img ") and images, "the page shows no figure"
        for data, name in images:
            assert base64.b64decode(data) in bundled.get(name, []), f"{name} is on the page but not in the zip"
        shown = {name for _, name in images}
        # the placeholders of figures that do not apply are declared outputs too
        assert set(bundled) >= shown | {p.name for p in (finished_repo / "reports/glyphs").glob("*.png")}