"""Dataset versioning with DVC, driven from either front door."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
from pathlib import Path

import yaml

from xbml.atomic import write_json
from xbml.errors import XbmlError


def content_hash(folder: Path) -> tuple[str, int, int]:
    """sha256 over (relative path, bytes) of every file, in sorted order; independent of DVC."""
    from xbml.datasets.links import files_within

    h = hashlib.sha256()
    files = size = 0
    # links that stay inside are followed, links that leave are refused: as `prepare` reads it
    for rel in files_within(folder, step="version"):
        path = folder / rel
        h.update(rel.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                size += len(block)
        files += 1
    return h.hexdigest(), files, size


@contextlib.contextmanager
def _repo_lock(root: Path):
    # several datasets may finish fetching at once; DVC allows one writer per repository
    lock_path = root / ".dvc" / "tmp" / "xbml-version.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _dvc(root: Path, *args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise XbmlError(f"`dvc {' '.join(args)}` failed in {root}:\n{proc.stdout}{proc.stderr}".rstrip())
    return proc.stdout


def tracked_hash(root: Path, path: str) -> str | None:
    """The md5 `dvc add` recorded for `path` in its .dvc file (git-tracked)."""
    dvc_file = root / f"{path}.dvc"
    if not dvc_file.exists():
        return None
    for out in (yaml.safe_load(dvc_file.read_text()) or {}).get("outs", []):
        if out.get("path") == Path(path).name:
            return out.get("md5")
    return None


def version_dataset(
    dataset: str, path: str, out: str, remote: str = "local", url: str | None = None,
    push: bool = True, use_dvc: bool = True,
) -> dict:
    folder = Path(path)
    if not folder.is_dir():
        raise XbmlError(f"{folder} is not a dataset folder; run `python -m xbml fetch {dataset}` first")
    root = Path.cwd()
    sha, files, size = content_hash(folder)
    receipt = {
        "dataset": dataset,
        "path": folder.as_posix(),
        "content_sha256": sha,
        "files": files,
        "bytes": size,
        "dvc_md5": None,
        "dvc_file": None,
        "remote": None,
        "pushed": False,
    }
    if use_dvc:
        if not (root / ".dvc").is_dir():
            raise XbmlError(f"{root} is not a DVC project (no .dvc/); run `dvc init` or set dvc.enabled: false")
        rel = folder.resolve().relative_to(root.resolve()).as_posix()
        with _repo_lock(root):
            if url:
                # config.local is per checkout, so an absolute path is right there
                target = url if "://" in url else str((root / url).resolve())
                _dvc(root, "remote", "add", "--local", "--force", remote, target)
            # `dvc add` is the folder's one DVC owner (no dvc.yaml stage lists it); it is safe
            # inside `dvc repro`, which releases the repository lock while a stage command runs
            _dvc(root, "add", "--quiet", rel)
            if push:
                _dvc(root, "push", "--remote", remote, f"{rel}.dvc")
        receipt.update(dvc_md5=tracked_hash(root, rel), dvc_file=f"{rel}.dvc", remote=remote, pushed=push)
    write_json(out, receipt)
    return receipt
