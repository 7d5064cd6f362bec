"""One writer per output: an exclusive lock held for the life of the process that writes it.

The lock is a POSIX record lock (``fcntl.lockf``) on a small file beside or inside the output.
The kernel (or, on a shared NFS folder, the lock manager) releases it when the holder exits in
any way, kill -9 and a Slurm preemption included, so a dead writer never leaves an obstacle,
and a second writer on another node of a cluster sees it as well as one on the same host
(a PID file could only be checked on one host). The holder writes its host and process id into
the file so that a refused writer can name it.

Lock files are named ``*.xbml-lock`` (``.xbml-lock`` inside a run folder): .gitignore and
.dvcignore leave them out, and the holder deletes its file on exit, so neither git, DVC's
directory hashes nor Snakemake's outputs ever see one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from xbml.errors import XbmlError

RUN_LOCK_NAME = ".xbml-lock"
LOCK_SUFFIX = ".xbml-lock"
_HOLDER_BYTES = 512  # what a refused writer reads back: host, pid and start time fit easily


class LockHeld(XbmlError):
    pass


def lock_beside(target: str | os.PathLike) -> Path:
    """The lock of a folder written as a whole (fetch, prepare): beside it, never inside it,
    so that it is no part of the folder a workflow tool or DVC hashes."""
    target = Path(target)
    return target.parent / f".{target.name}{LOCK_SUFFIX}"


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, _HOLDER_BYTES, 0).decode("utf-8", "replace")
    except OSError:
        text = ""
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    if "pid" not in fields:
        return "another process (it has not written its name yet)"
    since = fields.get("since")
    when = f", since {since}" if since else ""
    return f"process {fields['pid'][:20]} on host {fields.get('host', '?')[:100]}{when}"


def _open_locked(path: Path, what: str) -> int:
    """An fd of `path` holding the lock; the file is the one at `path` now (not a file a
    finishing holder just deleted), so two writers can never hold locks on two inodes."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = _holder(fd)
            os.close(fd)
            raise LockHeld(
                f"{what} is being written by {holder} (lock {path}); two writers would corrupt it: "
                "wait for that process to finish or stop it, or choose another output. "
                "The lock goes away by itself when its holder exits, even when it is killed"
            ) from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        opened = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
            return fd
        os.close(fd)  # the previous holder deleted the file between our open and our lock: retry


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold the lock `path` for the body; LockHeld (exit 2 at the CLI) names the live holder."""
    path = Path(path)
    made = _missing_folders(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = _open_locked(path, what)
    except BaseException:
        _remove_if_empty(made)
        raise
    try:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host={socket.gethostname()} pid={os.getpid()} since={stamp}\n".encode(), 0)
        yield path
    finally:
        # delete while still holding it; a writer waiting on the old file notices (inode check)
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        _remove_if_empty(made)  # a writer that wrote nothing leaves no folder behind either


def _missing_folders(folder: Path) -> list[Path]:
    """The folders mkdir(parents=True) would create for `folder`, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (the writer's outputs are in it), or gone


def run_folder_lock(out_dir: str | os.PathLike) -> contextlib.AbstractContextManager:
    """The lock of a training run folder: inside it, beside its checkpoints and logs."""
    out_dir = Path(out_dir)
    return exclusive_lock(out_dir / RUN_LOCK_NAME, f"run folder {out_dir}")


def folder_lock(target: str | os.PathLike, what: str) -> contextlib.AbstractContextManager:
    return exclusive_lock(lock_beside(target), f"{what} {target}")
