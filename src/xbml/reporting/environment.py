"""What a result depends on: data version, code commit, libraries, devices, stage costs."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

# distribution names (the first installed one of each group is reported)
LIBRARIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("torch", ("torch",)),
    ("torchvision", ("torchvision",)),
    ("faiss", ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss")),
    ("pytorch-metric-learning", ("pytorch-metric-learning",)),
    ("numpy", ("numpy",)),
    ("snakemake", ("snakemake",)),
    ("dvc", ("dvc",)),
    ("pandas", ("pandas",)),
    ("scipy", ("scipy",)),
    ("scikit-learn", ("scikit-learn",)),
    ("matplotlib", ("matplotlib",)),
    ("seaborn", ("seaborn",)),
    ("xbml", ("xbml",)),
)


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name, dists in LIBRARIES:
        version = "not installed"
        for dist in dists:
            try:
                version = metadata.version(dist)
                if dist != name:
                    version = f"{version} ({dist})"
                break
            except metadata.PackageNotFoundError:
                continue
        out[name] = version
    return out


def git_state(cwd: str | Path = ".") -> dict:
    """{'commit': sha or None, 'dirty': bool or None, 'note': why unknown}; never raises."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except FileNotFoundError:
        return {"commit": None, "dirty": None, "note": "git is not installed"}
    except subprocess.CalledProcessError as exc:
        msg = (exc.stderr or "").strip().splitlines()
        return {"commit": None, "dirty": None, "note": msg[-1] if msg else "not a git repository"}
    except subprocess.TimeoutExpired:
        return {"commit": None, "dirty": None, "note": "git timed out"}
    try:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        dirty = None
    return {"commit": commit, "dirty": dirty, "note": ""}


def data_version(results: str | Path, dataset: str) -> dict | None:
    path = Path(results) / dataset / "data_version.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"error": f"{path} is not valid JSON"}
    return data if isinstance(data, dict) else {"error": f"{path} holds no JSON object"}


def dvc_hash(version: dict | None) -> str | None:
    if not version:
        return None
    for key in ("dvc_md5", "md5", "dvc_hash"):
        if version.get(key):
            return str(version[key])
    return None


def machine(look_for_gpu: bool) -> dict[str, str]:
    """The machine writing the report (training devices come from the runs' summaries). Its GPU
    matters only where the report's pictures ran on it (`look_for_gpu`): importing torch only to
    look (2.5-3 CPU-s) would cost every report, also those that draw no picture."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu cores": str(os.cpu_count()),
        "python executable": sys.executable,
    }
    if not look_for_gpu:
        info["gpu"] = "not looked for (this report drew no picture, the only part that runs torch)"
        return info
    import torch

    if torch.cuda.is_available():
        info["gpu"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    else:
        info["gpu"] = "none visible"
    return info


def benchmarks(results: str | Path, dataset: str):
    """Snakemake benchmark TSVs under results/{dataset}/benchmarks/: one row per file (mean of its
    repeats) with the rule (first folder, or the file name at the top) and the job."""
    import pandas as pd

    root = Path(results) / dataset / "benchmarks"
    rows = []
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        rel = path.relative_to(root)
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        job = Path(*rel.parts[1:]).with_suffix("").as_posix() if len(rel.parts) > 1 else ""
        try:
            table = pd.read_csv(path, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            continue
        if "s" not in table.columns or table.empty:
            continue
        rss = pd.to_numeric(table["max_rss"], errors="coerce") if "max_rss" in table.columns else None
        rows.append({
            "rule": rule, "job": job, "wall_s": float(pd.to_numeric(table["s"], errors="coerce").mean()),
            "max_rss_mb": float(rss.max()) if rss is not None else float("nan"),
            "cpu_s": float(pd.to_numeric(table["cpu_time"], errors="coerce").mean()) if "cpu_time" in table.columns else float("nan"),
        })
    return pd.DataFrame(rows, columns=["rule", "job", "wall_s", "max_rss_mb", "cpu_s"])


def hms(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "n/a"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}"
