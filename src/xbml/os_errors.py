"""Operating-system failures as one line a user can act on: what happened, to which path, what to do.

The CLI turns every OSError into such a line (exit 2). ``torch.save`` reports a failed write
only as ``unexpected pos N vs M``, so :func:`save_torch` looks at the disk itself when it
fails and says "no space left on device" (or "file size limit") with the path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
from pathlib import Path
from typing import Iterator

from xbml.errors import XbmlError

# below this much free space a failed write is taken for a full disk
_FULL_BYTES = 1 << 20
_SHOWN = 300  # characters of a path or library message put into a line


def _short(text: object) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


_ADVICE = {
    errno.ENOSPC: ("no space left on device", "free space there or choose another output folder, then rerun"),
    errno.EDQUOT: ("disk quota exceeded", "free space in your quota or choose another output folder, then rerun"),
    errno.EFBIG: ("file too large for the file size limit (ulimit -f) or the file system",
                  "raise the limit or write to another file system, then rerun"),
    errno.EROFS: ("read-only file system", "choose an output folder on a writable file system"),
    errno.EACCES: ("permission denied", "fix the permissions or choose a folder you may write"),
    errno.EPERM: ("operation not permitted", "fix the permissions or choose a folder you may write"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "correct the path or move that file away"),
    errno.EISDIR: ("is a folder where a file is needed", "give a file name, not a folder"),
    errno.EEXIST: ("exists already and is in the way (a file where a folder is needed?)",
                   "correct the path or move it away"),
    errno.ENOENT: ("no such file or folder", "check the path, or run the step that makes it first"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path"),
    errno.ENOLCK: ("the file system offers no locks (NFS mounted with nolock?)",
                   "put the output on storage with working locks (docs/slurm.md)"),
    errno.EIO: ("input/output error: the disk or network file system failed", "check the storage and rerun"),
}


def describe(exc: OSError) -> str:
    """One line for an OSError: the path(s), the problem, the fix; no traceback."""
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(_short(os.fsdecode(p)) for p in paths) if paths else None
    problem, fix = _ADVICE.get(exc.errno, (_short(exc.strerror or exc), "check the path and the storage, then rerun"))
    subject = f"{where}: {problem}" if where else problem
    return f"{subject} ({errno.errorcode.get(exc.errno, 'error')}); {fix}"


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """Give an OSError raised without a file name (a buffered write or fsync on a full disk)
    the path it concerns, so that the user's line names it."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, os.fspath(path)) from None


def _file_size_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def write_failure(path: Path, written: Path, exc: BaseException) -> XbmlError:
    """Why writing `written` (the temporary of `path`) failed, named by errno where it can be
    told from the disk, else the library's first line."""
    limit = _file_size_limit()
    try:
        size = written.stat().st_size
    except OSError:
        size = 0
    if limit is not None and size >= limit:
        return XbmlError(describe(OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))))
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if free is not None and free < _FULL_BYTES:
        return XbmlError(describe(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))))
    if isinstance(exc, OSError):
        return XbmlError(describe(exc if exc.filename else OSError(exc.errno, exc.strerror, str(path))))
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return XbmlError(f"{path}: writing failed ({_short(first)}); check the disk and rerun")


def save_torch(obj, path: str | os.PathLike) -> None:
    """``torch.save`` into an atomic temporary of `path`: all of it, or nothing and a clear line."""
    import torch

    from xbml.atomic import atomic_path

    path = Path(path)
    with atomic_path(path, suffix=".tmp") as tmp:
        try:
            torch.save(obj, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        except (RuntimeError, OSError) as exc:
            raise write_failure(path, tmp, exc) from None
