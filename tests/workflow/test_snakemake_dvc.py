"""The product as users run it: real Snakemake and DVC on a tiny config, in a throw-away repository."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch

from workflow_copy import env, make_copy, run, tiny_config
from xbml.workflow.data_version import content_hash

pytestmark = pytest.mark.slow

METRICS = ("map_at_r", "r_precision", "precision_at_1", "recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8")


def _metrics(repo, split="test"):
    out = {}
    for path in sorted((repo / "results/glyphs").glob(f"*/seed*/metrics_{split}.json")):
        data = json.loads(path.read_text())
        out[str(path.relative_to(repo))] = {k: data[k] for k in METRICS}
    return out


@pytest.fixture(scope="module")
def finished_repo(tmp_path_factory):
    repo = make_copy(tmp_path_factory.mktemp("repo"), tiny_config())
    run(["snakemake", "--cores", "2", "all"], repo)
    return repo


def test_snakemake_runs_the_whole_dag_and_writes_the_report(finished_repo):
    repo = finished_repo
    report = repo / "reports/glyphs"
    assert (report / "index.html").stat().st_size > 0
    assert (report / "metrics.csv").exists()
    assert list(report.glob("*.png"))
    metrics = _metrics(repo)
    assert set(metrics) == {"results/glyphs/baseline/seed0/metrics_test.json", "results/glyphs/xml/seed0/metrics_test.json"}
    for values in metrics.values():
        assert all(0.0 <= v <= 1.0 for v in values.values())
    # every rule left its log where Snakemake said it would
    assert (repo / "logs/glyphs/train/xml/seed0.log").exists()
    assert (repo / "results/glyphs/benchmarks/train/xml/seed0.tsv").exists()


def test_second_run_has_nothing_to_do(finished_repo):
    out = run(["snakemake", "--cores", "2", "all"], finished_repo)
    assert "Nothing to be done" in out.stdout + out.stderr


def test_dataset_is_versioned_and_dvc_pull_restores_it_in_a_fresh_clone(finished_repo, tmp_path):
    repo = finished_repo
    receipt = json.loads((repo / "results/glyphs/data_version.json").read_text())
    assert receipt["dvc_md5"] and receipt["dvc_md5"].endswith(".dir")
    assert receipt["pushed"] is True
    assert "fetch_glyphs" in (repo / "dvc.lock").read_text()
    assert any((repo / "data/dvc-remote").rglob("*")), "nothing was pushed to the remote"

    run(["git", "add", "dvc.lock", "dvc.yaml"], repo)
    run(["git", "commit", "-q", "-m", "record the dataset version"], repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "data/raw/glyphs").exists()
    # the default remote is a folder inside the original checkout: point the clone at it
    run(["dvc", "remote", "modify", "--local", "local", "url", str(repo / "data/dvc-remote")], clone)
    run(["dvc", "pull", "fetch_glyphs"], clone)
    assert content_hash(clone / "data/raw/glyphs") == content_hash(repo / "data/raw/glyphs")


def test_dvc_repro_runs_the_same_dag_with_equal_metrics(finished_repo):
    repo = finished_repo
    before = _metrics(repo)
    # forget Snakemake's outputs so DVC must recompute everything after the fetch
    for path in (repo / "results").rglob("metrics_*.json"):
        path.unlink()
    run(["dvc", "repro"], repo)
    after = _metrics(repo)
    assert after == before
    shown = run(["dvc", "metrics", "show", "--json"], repo).stdout
    for key in ("map_at_r", "r_precision", "precision_at_1"):
        assert key in shown
    assert "results/glyphs/xml/seed0/metrics_test.json" in shown


def test_bad_config_is_refused_before_any_job_runs(tmp_path):
    cfg = tiny_config()
    cfg["methods"]["xml"] = {"xml.lamda": 0.1}
    repo = make_copy(tmp_path / "repo", cfg)
    out = run(["snakemake", "--cores", "2", "all"], repo, check=False)
    assert out.returncode != 0
    assert "unknown config key 'xml.lamda'" in out.stdout + out.stderr
    assert not (repo / "data/raw").exists() and not (repo / "results").exists()

    cfg = tiny_config()
    cfg["seeds"] = "zero"
    (repo / "config/config.yaml").write_text(__import__("yaml").safe_dump(cfg))
    out = run(["snakemake", "--cores", "2", "all"], repo, check=False)
    assert out.returncode != 0 and "seeds" in out.stdout + out.stderr
    assert not (repo / "results").exists()


def test_killed_training_job_resumes_from_its_checkpoint(tmp_path):
    repo = make_copy(tmp_path / "repo", tiny_config(iterations=300))
    target = "results/glyphs/xml/seed0/model.pt"
    proc = subprocess.Popen(
        ["snakemake", "--cores", "2", target], cwd=repo, env=env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    ckpt = repo / "results/glyphs/xml/seed0/checkpoints/last.pt"
    deadline = time.time() + 300
    killed_at = None
    try:
        while time.time() < deadline and proc.poll() is None:
            if ckpt.exists():
                try:
                    killed_at = torch.load(ckpt, weights_only=True)["iteration"]
                except Exception:  # being replaced right now
                    killed_at = None
                if killed_at and killed_at >= 20:
                    break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and its training job, as a node failure would
        proc.wait()
    assert killed_at and killed_at < 300, "training was not caught mid-run"
    assert not (repo / target).exists()

    run(["snakemake", "--unlock"], repo)
    run(["snakemake", "--cores", "2", "--rerun-incomplete", target], repo)
    log = (repo / "logs/glyphs/train/xml/seed0.log").read_text()
    resumed = [line for line in log.splitlines() if "resumed from" in line]
    assert resumed, log
    resumed_at = int(resumed[0].rsplit(" ", 1)[1])
    assert resumed_at >= killed_at
    summary = json.loads((repo / "results/glyphs/xml/seed0/train_summary.json").read_text())
    assert summary["iterations"] == 300
    assert len((repo / "results/glyphs/xml/seed0/train_log.jsonl").read_text().splitlines()) == 300


def test_snakemake_report_bundles_the_report(finished_repo):
    out = finished_repo / "snakemake-report.zip"
    run(["snakemake", "--report", str(out)], finished_repo)
    import zipfile

    names = zipfile.ZipFile(out).namelist()
    # Snakemake stores each report() output under a hashed folder
    assert "snakemake-report/report.html" in names, names
    assert any(n.endswith("/index.html") for n in names) and any(n.endswith("/metrics.csv") for n in names), names
