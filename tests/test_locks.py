"""One writer per output, with real second processes: a live holder is named (host and pid), a
holder killed with SIGKILL leaves nothing in the way, and a finished writer leaves no lock file
for DVC or Snakemake to see."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest

from conftest import PYTHON, ROOT, make_blob_dataset, tiny_train_overrides
from faults import cli, error_line, xbml
from xbml.locks import RUN_LOCK_NAME, exclusive_lock, lock_beside

# holds a lock until killed: a second writer in another process, as a second job would be
HOLD = """
import sys, time
from xbml.locks import exclusive_lock
with exclusive_lock(sys.argv[1], "test"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder():
    started = []

    def hold(path):
        proc = subprocess.Popen([PYTHON, "-c", HOLD, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "held"
        started.append(proc)
        return proc

    yield hold
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _kill_9(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_a_second_train_is_refused_by_holder_and_runs_once_the_holder_is_killed(capsys, tmp_path, holder):
    prepared = make_blob_dataset(tmp_path / "prepared")
    run = tmp_path / "run"
    args = ["train", "--out", run]
    for o in tiny_train_overrides(prepared, iterations=8):
        args += ["--set", o]
    first = holder(run / RUN_LOCK_NAME)
    refused = xbml(*args)
    error_line(refused.returncode, refused.stderr, f"process {first.pid} on host {socket.gethostname()}",
               f"run folder {run}")
    assert not (run / "checkpoints").exists()  # refused before touching anything
    _kill_9(first)  # the kernel releases its lock; its file stays, naming a dead process
    assert (run / RUN_LOCK_NAME).exists()
    code, err = cli(capsys, *args)  # the rerun (in-process: no second interpreter start-up)
    assert code == 0, err[-2000:]
    assert (run / "model.pt").exists()
    assert not (run / RUN_LOCK_NAME).exists()  # a finished writer leaves nothing for DVC to hash
    assert (run / "train_log.jsonl").read_text().count("\n") == 8  # one writer: each iteration once


@pytest.mark.parametrize("step", ["fetch", "prepare"])
def test_a_second_fetch_or_prepare_into_one_folder_is_refused(tmp_path, holder, step):
    target = tmp_path / "data" / "glyphs"
    first = holder(lock_beside(target))
    args = ["fetch", "glyphs", "--out", target] if step == "fetch" else ["prepare", "glyphs", "--raw", tmp_path / "raw",
                                                                       "--out", target]
    refused = xbml(*args)
    error_line(refused.returncode, refused.stderr, f"process {first.pid}", str(target))
    assert sorted(p.name for p in target.parent.iterdir()) == [".glyphs.xbml-lock"]  # no staging folder made


def test_the_lock_is_beside_a_whole_folder_output_and_released_by_its_holder(tmp_path):
    target = tmp_path / "raw" / "glyphs"
    assert lock_beside(target) == tmp_path / "raw" / ".glyphs.xbml-lock"
    with exclusive_lock(lock_beside(target), "raw folder") as path:
        # (never read the file here: closing any descriptor of it would drop this process's lock)
        probe = subprocess.run([PYTHON, "-c", HOLD, str(path)], cwd=ROOT, capture_output=True, text=True)
        assert probe.returncode != 0 and f"process {os.getpid()}" in probe.stderr
    assert not path.exists()
    with exclusive_lock(path, "raw folder"):  # taken again at once: nothing was left behind
        pass
