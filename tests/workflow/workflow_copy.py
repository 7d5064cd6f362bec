"""A throw-away copy of this repository with a tiny config, for real Snakemake/DVC runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import copy_repository

TINY_SOURCES = {"glyphs": {"max_classes": 48, "images_per_class": 8}}


def tiny_config(iterations: int = 40, seeds=(0,)) -> dict:
    return {
        "datasets": {
            "glyphs": {
                "train_config": "config/train/glyphs.yaml",
                "sources": "config/tiny-sources.yaml",
                "val_fraction": 0.25,
                "split_seed": 0,
                "overrides": {
                    "train.iterations": iterations,
                    "train.eval_every": 20,
                    "train.checkpoint_every": 10,
                    "sampler.classes_per_batch": 8,
                },
            }
        },
        "methods": {"baseline": {}, "xml": {"xml.weight": 0.1}},
        "seeds": list(seeds),
        "report": {"tsne_classes": 8, "retrieval_queries": 3},
    }


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


def make_copy(dest: Path, config: dict) -> Path:
    """Tracked and untracked-but-not-ignored files of this checkout, as a new git repository."""
    copy_repository(dest)
    (dest / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (dest / "config/tiny-sources.yaml").write_text(yaml.safe_dump(TINY_SOURCES))
    for stale in ("dvc.lock",):
        (dest / stale).unlink(missing_ok=True)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "test copy"], dest)
    return dest
