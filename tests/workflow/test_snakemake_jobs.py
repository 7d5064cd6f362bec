"""Snakemake runs that need a repository of their own: a dry run, a refused config, a killed
training job (split from test_snakemake_dvc.py, whose shared finished repository they do not use,
so that the two files run on two test workers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch
import yaml

from workflow_copy import env, git_status, make_copy, run, tiny_config

pytestmark = pytest.mark.slow


def test_dry_run_changes_no_tracked_file(tmp_path):
    repo = make_copy(tmp_path / "repo", tiny_config())
    run(["snakemake", "-n", "--cores", "2", "all"], repo)
    assert git_status(repo) == ""


def test_bad_config_is_refused_before_any_job_runs(tmp_path):
    cfg = tiny_config()
    cfg["methods"]["xml"] = {"xml.lamda": 0.1}
    repo = make_copy(tmp_path / "repo", cfg)
    out = run(["snakemake", "--cores", "2", "all"], repo, check=False)
    assert out.returncode != 0
    assert "unknown config key 'xml.lamda'" in out.stdout + out.stderr
    assert not (repo / "data/raw/glyphs").exists() and not (repo / "results").exists()

    cfg = tiny_config()
    cfg["seeds"] = "zero"
    (repo / "config/config.yaml").write_text(yaml.safe_dump(cfg))
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
