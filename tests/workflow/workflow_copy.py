"""A throw-away copy of this repository with a tiny config, for real Snakemake/DVC runs."""

from __future__ import annotations

import copy
import shutil
import os
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT, copy_repository

# the catalog's test configuration (.test/config/): tests and `--configfile .test/...` agree
TEST_CONFIG = yaml.safe_load((ROOT / ".test/config/config.yaml").read_text())


def tiny_config(iterations: int = 40, seeds=(0,), pictures: bool = True) -> dict:
    """pictures=False: the report's retrieval, t-SNE and prototype figures become placeholders and
    the report never imports torch (8.5-9.4 instead of 15-20 CPU-s for the tiny DAG's report,
    measured), for tests that check other things than the pictures."""
    cfg = copy.deepcopy(TEST_CONFIG)
    cfg["datasets"]["glyphs"]["overrides"]["train.iterations"] = iterations
    cfg["seeds"] = list(seeds)
    if not pictures:
        cfg["report"].update(tsne_classes=0, retrieval_queries=0, prototype_images=0)
    return cfg


def env() -> dict:
    # local test servers on 127.0.0.1 must not be reached through a proxy
    e = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e['PATH']}"
    e["DVC_NO_ANALYTICS"] = "1"
    e.setdefault("XDG_CACHE_HOME", str(Path("/tmp") / f"xbml-xdg-{os.getuid()}"))
    e.update(GIT_AUTHOR_NAME="xbml test", GIT_AUTHOR_EMAIL="test@xbml.invalid",
             GIT_COMMITTER_NAME="xbml test", GIT_COMMITTER_EMAIL="test@xbml.invalid")
    return e


def run(cmd, cwd, check=True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def git_status(repo: Path) -> str:
    return run(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout


def make_copy(dest: Path, config: dict) -> Path:
    """Tracked and untracked-but-not-ignored files of this checkout, as a new git repository."""
    copy_repository(dest)
    (dest / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # state of this checkout's own runs, which a fresh experiment must not start from
    for stale in ("dvc.lock", *(p.relative_to(dest) for p in dest.glob("data/raw/*.dvc"))):
        (dest / stale).unlink(missing_ok=True)
    for stale in ("metrics",):
        shutil.rmtree(dest / stale, ignore_errors=True)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "test copy"], dest)
    return dest
