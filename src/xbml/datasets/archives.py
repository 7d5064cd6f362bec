"""Extract tar and zip archives safely: every member is checked before anything is written.

Refused, naming the member in a DataError: absolute paths, paths that climb out
of the target with ``..``, symbolic or hard links whose target lies outside,
members that would be written through a link of the same archive, members that
conflict (a file ``x`` and a member ``x/y`` that needs ``x`` to be a folder), and
device files, FIFOs and other special files. Tar members are extracted with Python's
``data`` filter as a second line of defence (it re-checks against the real file
system, and drops owners and unsafe permission bits).

``extract(archive, target)`` extracts into a temporary folder beside `target`
and renames it into place only when complete, so `target` never appears half
written. ``extract_into(archive, folder)`` extracts into an existing folder and
is meant for a folder that is itself a staging area.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterable

from xbml.atomic import make_temp_dir, remove_stale_siblings, replace_dir
from xbml.errors import DataError

_DRIVE = re.compile(r"^[A-Za-z]:")


def archive_kind(path: str | os.PathLike) -> str:
    """'zip' or 'tar' (any compression tarfile reads), from the file's content."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"archive {path} does not exist")
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError, zlib.error, tarfile.TarError):
        pass
    raise DataError(f"{path} is neither a tar nor a zip archive (or it is damaged); download it again")


def resolve_inside(parts: Iterable[str]) -> list[str] | None:
    """Resolve '.' and '..' lexically; None when the path leaves its root (a path in an archive or an
    annotation file names no link of the real file system, so lexical is what it means)."""
    stack: list[str] = []
    for p in parts:
        if p in ("", "."):
            continue
        if p == "..":
            if not stack:
                return None
            stack.pop()
        else:
            stack.append(p)
    return stack


def is_absolute_path(name: str) -> bool:
    """Absolute in POSIX or Windows terms (/x, \\x, C:x): never meant relative to a target folder."""
    return name.startswith(("/", "\\")) or bool(_DRIVE.match(name))


def _refuse(archive: Path, member: str, why: str) -> DataError:
    return DataError(
        f"refusing to extract {archive}: member {member!r} {why}. Nothing was extracted; "
        "the archive is damaged or not the published one: delete it and download it again from a trusted mirror"
    )


def _check_names(archive: Path, entries: list[tuple[str, str, str | None]]) -> None:
    """entries: (name, kind, link) with kind in file/dir/symlink/hardlink/special; raises on the first unsafe one."""
    symlinks = set()
    for name, kind, _ in entries:
        if kind == "symlink":
            resolved = resolve_inside(PurePosixPath(name).parts)
            if resolved:
                symlinks.add("/".join(resolved))

    def through_link(parts: tuple[str, ...]) -> str | None:
        # walk the raw components: any prefix that is a link of this archive would redirect the write
        stack: list[str] = []
        for p in parts:
            if p in ("", "."):
                continue
            if p == "..":
                if stack:
                    stack.pop()
                continue
            stack.append(p)
            key = "/".join(stack)
            if key in symlinks:
                return key
        return None

    for name, kind, link in entries:
        if kind == "special":
            raise _refuse(archive, name, "is a device file, FIFO or other special file")
        if is_absolute_path(name):
            raise _refuse(archive, name, "has an absolute path")
        parts = PurePosixPath(name).parts
        if resolve_inside(parts) is None:
            raise _refuse(archive, name, "would be written outside the target folder ('..')")
        via = through_link(parts[:-1])
        if via is not None:
            raise _refuse(archive, name, f"would be written through the symbolic link {via!r}")
        if kind in ("symlink", "hardlink"):
            assert link is not None
            if is_absolute_path(link):
                raise _refuse(archive, name, f"is a link to the absolute path {link!r}")
            base = PurePosixPath(name).parent.parts if kind == "symlink" else ()
            joined = tuple(base) + PurePosixPath(link).parts
            if resolve_inside(joined) is None:
                raise _refuse(archive, name, f"is a link to {link!r}, outside the target folder")
            via = through_link(joined)
            if via is not None:
                raise _refuse(archive, name, f"is a link whose target {link!r} goes through the link {via!r}")
    _check_conflicts(archive, entries)


def _check_conflicts(archive: Path, entries: list[tuple[str, str, str | None]]) -> None:
    """Refuse a member that needs a folder where another member is a file (x, then x/y or x/)."""
    # after _check_names' per-member checks: every name resolves inside the target
    files = {}
    for name, kind, _ in entries:
        if kind != "dir":
            files.setdefault("/".join(resolve_inside(PurePosixPath(name).parts)), name)
    for name, kind, _ in entries:
        parts = resolve_inside(PurePosixPath(name).parts)
        folders = ["/".join(parts[:i]) for i in range(1, len(parts) + (kind == "dir"))]
        clash = next((files[f] for f in folders if f in files), None)
        if clash is not None:
            raise _refuse(
                archive, name, f"conflicts with the file member {clash!r}, which it needs to be a folder"
            )


def _tar_entries(tf: tarfile.TarFile) -> list[tuple[str, str, str | None]]:
    out = []
    for m in tf.getmembers():
        if m.issym():
            kind, link = "symlink", m.linkname
        elif m.islnk():
            kind, link = "hardlink", m.linkname
        elif m.isdir():
            kind, link = "dir", None
        elif m.isreg():
            kind, link = "file", None
        else:
            kind, link = "special", None
        out.append((m.name, kind, link))
    return out


def _zip_entries(zf: zipfile.ZipFile) -> list[tuple[str, str, str | None]]:
    out = []
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            kind = "special"
        else:
            # zipfile writes a symlink entry as a small regular file holding its target: harmless
            kind = "dir" if info.is_dir() else "file"
        out.append((info.filename, kind, None))
    return out


def check_archive(archive: str | os.PathLike) -> list[str]:
    """Member names of a safe archive; DataError naming the first unsafe member otherwise."""
    archive = Path(archive)
    kind = archive_kind(archive)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                entries = _zip_entries(zf)
        else:
            with tarfile.open(archive) as tf:
                entries = _tar_entries(tf)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"archive {archive} is damaged ({exc}); delete it and download it again") from None
    _check_names(archive, entries)
    return [name for name, _, _ in entries]


def _progress(items: list, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(items, desc=f"extract {name}", unit="file", disable=not enabled, leave=False)


def extract_into(archive: str | os.PathLike, folder: str | os.PathLike, progress: bool = False) -> None:
    """Check every member, then extract all of them into the existing `folder`."""
    archive, folder = Path(archive), Path(folder)
    if not folder.is_dir():
        raise DataError(f"cannot extract {archive}: {folder} is not a folder")
    kind = archive_kind(archive)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                entries = _zip_entries(zf)
                _check_names(archive, entries)
                encrypted = [i.filename for i in zf.infolist() if i.flag_bits & 0x1]
                if encrypted:
                    raise DataError(
                        f"{archive} is password protected (e.g. {encrypted[0]!r}); extract it yourself "
                        "(`unzip` asks for the password) and set `local:` in the sources file to the extracted folder"
                    )
                for info in _progress(zf.infolist(), archive.name, progress):
                    zf.extract(info, folder)
        else:
            with tarfile.open(archive) as tf:
                _check_names(archive, _tar_entries(tf))
                members = tf.getmembers()
                try:
                    tf.extractall(folder, members=_progress(members, archive.name, progress), filter="data")
                except tarfile.FilterError as exc:
                    member = exc.tarinfo.name if getattr(exc, "tarinfo", None) is not None else "?"
                    raise _refuse(archive, member, f"was refused by the extraction filter ({exc})") from None
    except DataError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(f"archive {archive} is damaged ({exc}); delete it and download it again") from None


def extract(
    archive: str | os.PathLike,
    target: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Extract `archive` so that `target` holds its members; `target` appears only complete."""
    archive, target = Path(archive), Path(target)
    if target.exists() and not overwrite:
        raise DataError(f"cannot extract {archive}: {target} already exists (delete it or pass overwrite)")
    target.parent.mkdir(parents=True, exist_ok=True)
    for infix in (".extracting-", ".old-"):  # left by an extraction that was killed
        remove_stale_siblings(target, infix)
    tmp = make_temp_dir(f".{target.name}.extracting-", target.parent)
    try:
        extract_into(archive, tmp, progress=progress)
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
