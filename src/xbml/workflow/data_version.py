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


def stage_name(*parts: str) -> str:
    """DVC stage names allow letters, digits, - and _ only."""
    return "_".join("".join(c if c.isalnum() or c in "-_" else "-" for c in str(p)) for p in parts)


def content_hash(folder: Path) -> tuple[str, int, int]:
    """sha256 over (relative path, bytes) of every file, in sorted order; independent of DVC."""
    h = hashlib.sha256()
    files = size = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
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


def locked_hash(root: Path, stage: str, path: str) -> str | None:
    lock = root / "dvc.lock"
    if not lock.exists():
        return None
    data = yaml.safe_load(lock.read_text()) or {}
    for out in data.get("stages", {}).get(stage, {}).get("outs", []):
        if out.get("path") == path:
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
        "dvc_stage": None,
        "remote": None,
        "pushed": False,
    }
    if use_dvc:
        if not (root / ".dvc").is_dir():
            raise XbmlError(f"{root} is not a DVC project (no .dvc/); run `dvc init` or set dvc.enabled: false")
        stage = stage_name("fetch", dataset)
        dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text()) if (root / "dvc.yaml").exists() else {}
        if stage not in (dvc_yaml or {}).get("stages", {}):
            raise XbmlError(
                f"dvc.yaml has no stage {stage!r}; regenerate it with "
                "`python -m xbml dvc-pipeline --config config/config.yaml`"
            )
        with _repo_lock(root):
            if url:
                # config.local is per checkout, so an absolute path is right there
                target = url if "://" in url else str((root / url).resolve())
                _dvc(root, "remote", "add", "--local", "--force", remote, target)
            _dvc(root, "commit", "--force", stage)
            if push:
                _dvc(root, "push", "--remote", remote, stage)
        receipt.update(
            dvc_md5=locked_hash(root, stage, folder.as_posix()), dvc_stage=stage, remote=remote, pushed=push
        )
    write_json(out, receipt)
    return receipt
