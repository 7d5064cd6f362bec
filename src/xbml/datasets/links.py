"""Symbolic links in a dataset folder: those that stay inside are followed, those that leave it
are refused, by `prepare` (which reads the images) and by `version` (which hashes the folder)
alike, so the recorded hash covers exactly the bytes training reads (docs/datasets.md)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from xbml.errors import DataError

_SHOWN = 5


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def _refuse(root: Path, bad: list[str], step: str) -> DataError:
    shown = ", ".join(bad[:_SHOWN]) + (", ..." if len(bad) > _SHOWN else "")
    return DataError(
        f"{len(bad):,} path(s) in {root} lead outside it through a symbolic link ({shown}); {step} reads "
        "only what the folder holds, so that its DVC version covers it: copy the files in instead of "
        "linking them (or link the whole dataset folder)"
    )


def check_inside(root: str | os.PathLike, relative_paths, step: str = "prepare") -> None:
    """Refuse (DataError) any of `relative_paths` under `root` whose real location leaves `root`."""
    root = Path(root)
    root_real = os.path.realpath(root)
    bad = [p for p in relative_paths if not _inside(os.path.realpath(os.path.join(root, p)), root_real)]
    if bad:
        raise _refuse(root, bad, step)


def files_within(root: str | os.PathLike, step: str = "version") -> list[str]:
    """Every file under `root` as a sorted relative path, following links that stay inside it
    (each real folder entered once, so a link loop ends) and refusing links that leave it."""
    root = Path(root)
    root_real = os.path.realpath(root)
    out: list[str] = []
    bad: list[str] = []
    entered = {root_real}
    for folder, dirs, files in os.walk(root, followlinks=True):
        rel_folder = os.path.relpath(folder, root)
        for name in list(dirs):
            real = os.path.realpath(os.path.join(folder, name))
            if not _inside(real, root_real):
                bad.append(os.path.normpath(os.path.join(rel_folder, name)))
                dirs.remove(name)
            elif real in entered:
                dirs.remove(name)  # a loop, or a second link to a folder already read
            else:
                entered.add(real)
        for name in files:
            path = os.path.join(folder, name)
            rel = os.path.normpath(os.path.join(rel_folder, name))
            if not _inside(os.path.realpath(path), root_real):
                bad.append(rel)
            elif os.path.isfile(path):
                out.append(Path(rel).as_posix())
    if bad:
        raise _refuse(root, sorted(bad), step)
    return sorted(out, key=lambda rel: PurePosixPath(rel).parts)  # the order Path sorting gives
