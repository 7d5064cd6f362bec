"""`snakemake --profile slurm` against a real (single-node, loopback) Slurm.

One tiny glyphs DAG (two methods, one seed, test split) runs twice from two temporary copies of
the repository: locally with `snakemake --cores 2`, and through Slurm with the repository's
profile slurm/config.yaml plus a test profile layered on top that fits the sizes to this node
(1 thread and 1 CPU per GPU as in the local run, small memory, a faster first status check).
The node advertises FAKE_GPUS GPUs that do not exist, so training and embedding jobs keep the
profile's GPU request, are scheduled as on a GPU node and compute on the CPU; with FAKE_GPUS = 0
the test profile drops the GPU request instead. While the Slurm run trains, the test `scancel`s
one training job once it has written a checkpoint; the profile's retries must resubmit it and
the job must resume there.

Needs root; installs Debian's slurm-wlm and munge with apt-get where they are missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import copy_repository
from local_slurm import LocalSlurm, SlurmUnavailable, install, overlay_profile

pytestmark = pytest.mark.slurm

VENV_BIN = Path(sys.executable).parent
DATASET = "glyphs"
RUNS = [("baseline", 0), ("xml", 0)]
CANCELLED = ("baseline", 0)  # the training job that is scancel'led mid-run
ITERATIONS, CHECKPOINT_EVERY = 60, 10
TARGETS = [f"results/{DATASET}/{m}/seed{s}/metrics_test.json" for m, s in RUNS]
METRIC_KEYS = ("map_at_r", "r_precision", "precision_at_1")
TIMEOUT_S = 420
FAKE_GPUS = 2  # GPUs the loopback node advertises (0: the test profile drops the GPU request)
GPU_RULES = ("train", "embed_evaluate")

TINY_CONFIG = {
    "datasets": {
        DATASET: {
            "train_config": "config/train/glyphs.yaml",
            "sources": "config/tiny_sources.yaml",
            "val_fraction": 0.25,
            "split_seed": 0,
            "overrides": {
                "train.iterations": ITERATIONS,
                "train.checkpoint_every": CHECKPOINT_EVERY,
                "train.eval_every": 30,
                "sampler.classes_per_batch": 8,
                "optim.warmup_iterations": 5,  # shorter than the run (glyphs.yaml warms up for 100)
            },
        }
    },
    "methods": {"baseline": {}, "xml": {"xml.weight": 0.1}},
    "baseline": "baseline",
    "seeds": sorted({s for _, s in RUNS}),
    "eval_splits": ["test"],
    "dvc": {"enabled": True, "remote": "local", "url": "data/dvc-remote", "push": True},
}
TINY_SOURCES = {DATASET: {"max_classes": 40, "images_per_class": 10}}


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm():
    try:
        install(log=lambda m: print(m, file=sys.stderr))
        cluster = LocalSlurm(partition="debug", fake_gpus=FAKE_GPUS)
        cluster.start()
    except SlurmUnavailable as exc:
        pytest.skip(f"no local Slurm: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


def _snapshot(dest: Path) -> Path:
    """The git-tracked and untracked-but-not-ignored files of the repository, with the tiny config.

    Taken once: both runs start from copies of this one snapshot, so they run the same code even
    while the working tree changes.
    """
    copy_repository(dest)
    (dest / "config/config.yaml").write_text(yaml.safe_dump(TINY_CONFIG, sort_keys=False))
    (dest / "config/tiny_sources.yaml").write_text(yaml.safe_dump(TINY_SOURCES))
    return dest


def _checkout(snapshot: Path, dest: Path) -> Path:
    """A copy of the snapshot as a fresh git repository (the version rule commits to DVC)."""
    shutil.copytree(snapshot, dest, symlinks=True)
    git = ["git", "-c", "user.name=xbml-test", "-c", "user.email=xbml-test@localhost", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "tiny config"], cwd=dest, check=True)
    return dest


def _env(copy: Path, cache: Path, base: dict | None = None) -> dict:
    env = {k: v for k, v in (base or os.environ).items() if not k.startswith(("SLURM_", "SNAKEMAKE_"))}
    env.update(
        XDG_CACHE_HOME=str(cache), DVC_NO_ANALYTICS="1", PYTHONPATH=str(copy / "src"),
        PATH=os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
    )
    return env


def _tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as exc:
        return f"({path}: {exc})"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # Snakemake cancels its Slurm jobs on SIGTERM
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def runs(slurm, tmp_path_factory):
    """Run the tiny DAG locally and through Slurm (with one scancel); return what the checks need.

    The two runs go side by side: the Slurm run spends most of its time waiting for status
    checks, and with one thread per job both compute the same numbers either way.
    """
    base = tmp_path_factory.mktemp("slurm-workflow")
    cache = base / "cache"
    snapshot = _snapshot(base / "snapshot")
    local, remote = _checkout(snapshot, base / "local"), _checkout(snapshot, base / "slurm")
    # the repository's profile, sized for this node: 1 thread (and 1 CPU per GPU) as in the local
    # run, 2 GB per job, a faster first status check; without fake GPUs, no GPU request
    override = overlay_profile(remote / "slurm/config.yaml", base / "test-profile", gpus=slurm.fake_gpus > 0,
                               mem_mb=2000, threads=1, init_seconds=2)
    local_log, slurm_log = base / "snakemake-local.log", base / "snakemake-slurm.log"
    snakemake = str(VENV_BIN / "snakemake")

    t0 = time.monotonic()
    with local_log.open("w") as fh:
        local_proc = subprocess.Popen([snakemake, "--cores", "2", *TARGETS], cwd=local, env=_env(local, cache / "local"),
                                      stdout=fh, stderr=subprocess.STDOUT)
    with slurm_log.open("w") as fh:
        slurm_proc = subprocess.Popen([snakemake, "--profile", "slurm", "--profile", str(override), *TARGETS],
                                      cwd=remote, env=slurm.env(_env(remote, cache / "slurm")), stdout=fh,
                                      stderr=subprocess.STDOUT)
    timings = {}
    try:
        cancelled = _cancel_training_mid_run(slurm, remote, slurm_proc)
        rc_slurm = slurm_proc.wait(timeout=max(1, TIMEOUT_S - (time.monotonic() - t0)))
        timings["slurm"] = round(time.monotonic() - t0, 1)
        rc_local = local_proc.wait(timeout=max(1, TIMEOUT_S - (time.monotonic() - t0)))
        timings["local"] = round(time.monotonic() - t0, 1)
    finally:
        _stop(slurm_proc)
        _stop(local_proc)
    print(f"wall time from start (s): {timings}", file=sys.stderr)
    diag = f"--- snakemake (Slurm)\n{_tail(slurm_log, 120)}\n--- slurmctld\n{_tail(slurm.slurmctld_log, 40)}"
    assert rc_local == 0, f"local run failed (rc {rc_local})\n{_tail(local_log, 120)}"
    assert rc_slurm == 0, f"Slurm run failed (rc {rc_slurm})\n{diag}"
    return {"local": local, "slurm": remote, "log": slurm_log.read_text(), "cancelled": cancelled,
            "cluster": slurm, "diag": diag, "timings": timings}


def _cancel_training_mid_run(slurm: LocalSlurm, copy: Path, proc: subprocess.Popen) -> dict:
    """scancel the CANCELLED run's training job once its checkpoint is past iteration 0."""
    method, seed = CANCELLED
    ckpt = copy / f"results/{DATASET}/{method}/seed{seed}/checkpoints/last.pt"
    comment = f"rule_train_wildcards_{DATASET}_{method}_seed{seed}"  # the wildcards: dataset, run, model
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        iteration = 0
        if ckpt.exists():
            try:
                iteration = int(torch.load(ckpt, map_location="cpu", weights_only=True)["iteration"])
            except Exception:  # noqa: BLE001 - read while being replaced: look again
                iteration = 0
        if iteration > 0:
            rows = slurm.run("squeue", "-h", "-o", "%i|%k|%T").stdout.split()
            running = [r.split("|")[0] for r in rows if r.split("|")[1:] == [comment, "RUNNING"]]
            assert len(running) == 1, f"no single running Slurm job with comment {comment}: {rows}"
            slurm.run("scancel", running[0])
            return {"job_id": running[0], "checkpoint_iteration": iteration}
        time.sleep(0.2)
    pytest.fail(f"the Slurm run ended or timed out before {ckpt} appeared (rc {proc.poll()})")


# -- checks --------------------------------------------------------------------------------------
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)")


def _submissions(log: str) -> list[tuple[str, str, str]]:
    """(rule, wildcards, Slurm job id) of every sbatch Snakemake made, from its log."""
    found = []
    for job_id, path in SUBMITTED.findall(log):
        parts = Path(path).parts
        rule = next(p for p in parts if p.startswith("rule_"))[len("rule_"):]
        found.append((rule, parts[-2], job_id))
    return found


def test_jobs_went_through_slurm(runs):
    subs = _submissions(runs["log"])
    assert subs, f"no Slurm submissions in Snakemake's log\n{runs['diag']}"
    rules = {rule for rule, _, _ in subs}
    assert rules == {"prepare", "train", "embed_evaluate"}, rules
    # localrules run beside Snakemake, not on Slurm: fetch (compute nodes may lack internet), version
    assert not rules & {"fetch", "version", "aggregate", "report"}
    cluster = runs["cluster"]
    ctld = cluster.slurmctld_log.read_text()
    queue = dict(row.split("|") for row in cluster.run("squeue", "-h", "--states=all", "-o", "%i|%T").stdout.split())
    cancelled = runs["cancelled"]["job_id"]
    for rule, wildcards, job_id in subs:
        # the controller really received and ran each of them
        assert re.search(rf"_slurm_rpc_submit_batch_job: JobId={job_id}\b", ctld), (rule, job_id)
        assert queue.get(job_id) == ("CANCELLED" if job_id == cancelled else "COMPLETED"), (rule, job_id, queue)
        # and training and embedding got a GPU from the scheduler (the profile's request), nothing else did
        record = cluster.run("scontrol", "show", "job", "-o", job_id).stdout
        gpus = re.search(r"TresPerJob=\S*gres:gpu:(\d+)", record)
        expected = 1 if (rule in GPU_RULES and cluster.fake_gpus) else None
        assert (int(gpus.group(1)) if gpus else None) == expected, (rule, job_id, record)


def test_metrics_equal_the_local_run(runs):
    for target in TARGETS:
        local = json.loads((runs["local"] / target).read_text())
        slurm = json.loads((runs["slurm"] / target).read_text())
        for key in METRIC_KEYS:
            assert key in local, (target, sorted(local))
            assert slurm[key] == local[key], (target, key, slurm[key], local[key])


def test_cancelled_training_job_is_resubmitted_and_resumes(runs):
    method, seed = CANCELLED
    wildcards = f"{DATASET}_{method}_seed{seed}"
    train_jobs = [job_id for rule, wc, job_id in _submissions(runs["log"]) if rule == "train" and wc == wildcards]
    assert len(train_jobs) == 2, f"expected the cancelled job and one resubmission: {train_jobs}"
    assert train_jobs[0] == runs["cancelled"]["job_id"]
    ctld = runs["cluster"].slurmctld_log.read_text()
    assert re.search(rf"REQUEST_KILL_JOB JobId={train_jobs[0]}\b", ctld), "the scancel never reached slurmctld"

    train_log = (runs["slurm"] / f"logs/{DATASET}/train/{method}/seed{seed}.log").read_text()
    m = re.search(r"resumed from (\S+) at iteration (\d+)", train_log)
    assert m, f"the resubmitted job started from scratch:\n{train_log[-3000:]}"
    assert m.group(1).endswith(f"{method}/seed{seed}/checkpoints/last.pt")
    assert 0 < int(m.group(2)) < ITERATIONS
    assert int(m.group(2)) >= runs["cancelled"]["checkpoint_iteration"]

    # and it ends exactly where the uninterrupted local run ended
    rel = f"results/{DATASET}/{method}/seed{seed}/model.pt"
    local = torch.load(runs["local"] / rel, map_location="cpu", weights_only=True)
    resumed = torch.load(runs["slurm"] / rel, map_location="cpu", weights_only=True)
    assert local["state_dict"].keys() == resumed["state_dict"].keys()
    for k, v in local["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k
    assert local["selected_iteration"] == resumed["selected_iteration"]
