"""Write outputs so that a reader sees the old file (or folder) or the complete new one, never half."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from xbml.os_errors import naming


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# the random part tempfile.mkstemp / mkdtemp put between prefix and suffix
_RANDOM_PART = "[a-z0-9_]{8}"


def remove_stale_siblings(target: str | os.PathLike, infix: str, suffix: str = "") -> list[Path]:
    """Delete what ``tempfile.mkstemp/mkdtemp(prefix=f".{target.name}{infix}", suffix=suffix,
    dir=target.parent)`` left behind when a run was killed; returns what was deleted.

    Only names of exactly that pattern go (a user's ``.name.old-backup`` stays), and never
    through a symbolic link. Call it before making the next temporary of `target`: a step
    owns the temporaries of its own output, so nothing live is removed.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{target.name}{infix}") + _RANDOM_PART + re.escape(suffix))
    removed = []
    for stale in target.parent.iterdir():
        if not pattern.fullmatch(stale.name) or stale.is_symlink():
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


def _temporary_suffix(path: Path, suffix: str | None) -> str:
    # keep the real suffix so libraries that dispatch on it (np.savez, PIL) behave
    return suffix or path.suffix or ".tmp"


def remove_stale_temporaries(target: str | os.PathLike, suffix: str | None = None) -> list[Path]:
    """Delete the temporaries a killed ``atomic_path(target, suffix)`` left beside `target`."""
    target = Path(target)
    return remove_stale_siblings(target, ".", _temporary_suffix(target, suffix))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only on success.

    Temporaries of `path` left by a killed earlier write are removed first.
    """
    path = Path(path)
    if path.is_dir():  # found now, not as a failed rename after all the work
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_temporary_suffix(path, suffix), dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the final file the permissions a plain open() would
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        with naming(path):  # a full disk shows in a write or fsync that knows no file name
            yield tmp_path
            with open(tmp_path, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def make_temp_dir(prefix: str, beside: Path) -> Path:
    """A fresh folder in `beside` with the permissions mkdir would give (mkdtemp gives 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=beside))
    os.chmod(path, 0o777 & ~_umask())
    return path


def replace_dir(staging: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename the finished folder `staging` to `target`, replacing a previous `target`.

    The old folder is first moved into ``.<target>.old-XXXXXXXX`` beside it (what
    ``remove_stale_siblings(target, ".old-")`` cleans after a kill) and put back if the
    second rename fails, so `target` is missing at most between two renames.
    """
    staging, target = Path(staging), Path(target)
    if not target.exists():
        os.replace(staging, target)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, trash / "content")
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(trash / "content", target)
        raise
    shutil.rmtree(trash, ignore_errors=True)
