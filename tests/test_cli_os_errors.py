"""Operating-system failures at the CLI: one line naming the path (exit 2), nothing half-written,
and a rerun that finishes once the fault is gone. A full and a read-only disk are real file
systems (a tmpfs in a private mount namespace, so this works as root, where chmod would not
stop a write); a file size limit (`ulimit -f`, EFBIG) needs no namespace at all."""

from __future__ import annotations

import shlex

import numpy as np
import pytest

from conftest import make_blob_dataset, tiny_train_overrides
from faults import cli, error_line, in_private_mount, leftovers, xbml
from xbml.evaluation import save_embeddings


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return make_blob_dataset(tmp_path_factory.mktemp("blobs") / "prepared")


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 4)
    return save_embeddings(tmp_path_factory.mktemp("emb") / "emb.npz", rng.standard_normal((40, 8)).astype(np.float32), y)


def _train_args(prepared, out, iterations=4):  # the first checkpoint, at 4, meets the fault
    args = ["train", "--out", str(out)]
    for o in tiny_train_overrides(prepared, iterations=iterations):
        args += ["--set", o]
    return args


def _shell(args) -> str:
    """`python -m xbml ARGS` as a shell command line (the interpreter comes from $PYTHON)."""
    return '"$PYTHON" -m xbml ' + " ".join(shlex.quote(str(a)) for a in args)


def test_outputs_in_the_way_are_named(capsys, tmp_path, blobs, embeddings):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    code, err = cli(capsys, *_train_args(blobs, a_file))
    error_line(code, err, str(a_file), "exists already")
    assert a_file.read_text() == "mine"
    (tmp_path / "folder").mkdir()
    code, err = cli(capsys, "evaluate", embeddings, "--out", tmp_path / "folder")
    error_line(code, err, str(tmp_path / "folder"), "is a folder where a file is needed")
    code, err = cli(capsys, "evaluate", embeddings, "--out", a_file / "metrics.json")
    error_line(code, err, str(a_file))
    assert list((tmp_path / "folder").iterdir()) == []


def test_a_full_disk_is_reported_by_name_and_the_rerun_on_more_space_finishes(tmp_path, blobs, embeddings):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    train = _shell(_train_args(blobs, mnt / "run"))
    script = f"""
        mount -t tmpfs -o size=1m tmpfs {mnt}
        {train} 2> {tmp_path}/train.err; echo $? > {tmp_path}/train.rc
        find {mnt} > {tmp_path}/after-train.txt
        head -c 2000000 /dev/zero > {mnt}/filler 2>/dev/null
        {_shell(["evaluate", embeddings, "--out", mnt / "metrics.json"])} 2> {tmp_path}/eval.err; echo $? > {tmp_path}/eval.rc
        rm {mnt}/filler
        mount -o remount,size=64m {mnt}
        {train} 2> {tmp_path}/again.err; echo $? > {tmp_path}/again.rc
        find {mnt} > {tmp_path}/after-again.txt
    """
    res = in_private_mount(script)
    assert res.returncode == 0, res.stderr
    line = error_line(int((tmp_path / "train.rc").read_text()), (tmp_path / "train.err").read_text(),
                      "no space left on device", str(mnt / "run"))
    assert "unexpected pos" not in line
    written = (tmp_path / "after-train.txt").read_text()
    assert "model.pt" not in written and ".tmp" not in written and "last.pt" not in written
    error_line(int((tmp_path / "eval.rc").read_text()), (tmp_path / "eval.err").read_text(),
               "no space left on device", str(mnt / "metrics.json"))
    assert int((tmp_path / "again.rc").read_text()) == 0, (tmp_path / "again.err").read_text()[-2000:]
    finished = (tmp_path / "after-again.txt").read_text()
    assert "run/model.pt" in finished and "metrics.json" not in finished


def test_a_read_only_disk_is_named_for_every_step(tmp_path, blobs, embeddings):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    steps = {
        "train": _train_args(blobs, mnt / "run"),
        "evaluate": ["evaluate", embeddings, "--out", mnt / "metrics.json"],
        "prepare": ["prepare", "glyphs", "--raw", tmp_path / "no-raw", "--out", mnt / "prepared"],
    }
    script = f"mount -t tmpfs -o ro tmpfs {mnt}\n" + "\n".join(
        f"{_shell(args)} 2> {tmp_path}/{name}.err; echo $? > {tmp_path}/{name}.rc" for name, args in steps.items()
    )
    res = in_private_mount(script)
    assert res.returncode == 0, res.stderr
    for name in steps:
        error_line(int((tmp_path / f"{name}.rc").read_text()), (tmp_path / f"{name}.err").read_text(),
                   "read-only file system", str(mnt))


def test_a_file_size_limit_is_named_not_unexpected_pos(capsys, tmp_path, blobs):
    # RLIMIT_FSIZE (EFBIG): the checkpoint (~3 MB) outgrows 1 MB; Python ignores SIGXFSZ
    run = tmp_path / "run"
    limited = xbml(*_train_args(blobs, run), prefix=["sh", "-c", 'ulimit -f 1024; exec "$@"', "sh"])
    line = error_line(limited.returncode, limited.stderr, "file too large", str(run / "checkpoints/last.pt"))
    assert "unexpected pos" not in line
    assert leftovers(run) == [] and not (run / "model.pt").exists()
    code, err = cli(capsys, *_train_args(blobs, run))  # the limit lifted (in-process: no second start-up)
    assert code == 0, err[-2000:]
    assert (run / "model.pt").exists() and leftovers(run) == []

