"""Shared fixtures: small prepared datasets on disk, built by the real manifest writer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# tests never write into the user's caches or print analytics banners
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# the tests check behaviour, not throughput: their trainings do not queue for CPU slots
# (xbml.training.cpu_slots; tests/training/test_cpu_slots.py sets its own)
os.environ["XBML_CPU_SLOTS"] = "off"
# three test workers share two cores: one OpenMP thread per process (torch's and faiss's in the
# workers; xbml's jobs already default to 1), and an idle one sleeps instead of spinning. Both are
# read when torch loads its OpenMP runtime, which no module imports before this one. Beside two busy
# processes, spinning took a 2-thread training from 19 to 43 CPU-s (30 to 53 s wall) here. Neither
# changes what a test checks; tests of the thread settings set their own
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# xbml's own cache (the glyph class selection, xbml.datasets.glyphs.selection_cache) is the tests'
# folder, shared by the test workers and their subprocesses, never the user's ~/.cache
os.environ["XBML_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"xbml-test-cache-{os.getuid()}")


def pytest_collection_modifyitems(config, items):
    """Longest files first, by their wall time in tests/durations.json (benchmarks/pytest_cpu.py
    writes it from a measured run; a file it does not list goes last). scripts/run-tests hands whole
    files to pytest-xdist's workers in this order (--dist loadfile --no-loadscope-reorder): left to
    itself, xdist sorts files by their number of tests, which started the one-test 4-fold workflow
    run last, alone, 90 s after the other workers had finished."""
    walls = json.loads((ROOT / "tests/durations.json").read_text())
    items.sort(key=lambda item: -walls.get(item.nodeid.split("::")[0], 0.0))  # stable: file order kept


# runs `xbml train` and SIGKILLs the process itself right after its checkpoint at KILL_AT is on
# disk: a real kill -9 at a known point, not a race against the clock
KILL_AFTER_CHECKPOINT = """
import os, signal, sys
import xbml.training.trainer as trainer
from xbml.cli import main
save = trainer.save_checkpoint
def save_then_die(path, state):
    save(path, state)
    if state["iteration"] >= int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
trainer.save_checkpoint = save_then_die
sys.exit(main(sys.argv[1:]))
"""


def copy_repository(dest: Path) -> Path:
    """This checkout's tracked and untracked-but-not-ignored files, copied to `dest` (no .git)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def make_blob_dataset(out: Path, classes: int = 24, per_class: int = 8, val_fraction: float = 0.0, seed: int = 0) -> Path:
    """A prepared dataset of noisy class templates: learnable, so training must beat chance."""
    from xbml.datasets.manifest import Manifest, split_classes, write_manifest

    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 255, size=(classes, 32, 32))
    images = templates[:, None] + rng.normal(0, 60, size=(classes, per_class, 32, 32))
    images = np.clip(images, 0, 255).astype(np.uint8).reshape(-1, 32, 32)
    labels = np.repeat(np.arange(classes), per_class)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "store.npz", images=images)
    split, fold = split_classes(labels, np.arange(classes // 2, classes), val_fraction, seed)
    roles = np.array(["both"] * len(labels), dtype=object)
    info = {"name": "blobs", "array_store": "store.npz", "channels": 1, "image_size": 32, "protocol": "self"}
    write_manifest(out, Manifest([f"#{i}" for i in range(len(labels))], labels, split, roles, fold, info=info))
    return out


def make_attribute_dataset(out: Path, classes: int = 120, per_class: int = 6, parts: int = 12, seed: int = 0) -> Path:
    """Classes that share attributes, the premise of XML: each class is a set of 3 of `parts`
    texture patches, each image places its class's patches in random cells of a 4x4 grid (the
    glyph net's 4x4 map) over noise. Unseen classes are new combinations of seen parts."""
    import itertools

    from xbml.datasets.manifest import Manifest, split_classes, write_manifest

    rng = np.random.default_rng(seed)
    patches = rng.integers(0, 255, size=(parts, 8, 8))
    combos = list(itertools.combinations(range(parts), 3))
    chosen = [combos[i] for i in rng.permutation(len(combos))[:classes]]
    images = rng.normal(128, 40, size=(classes * per_class, 32, 32))
    for i in range(classes * per_class):
        cells = rng.permutation(16)[: 2 * 3]
        for j, part in enumerate(chosen[i // per_class] * 2):
            r, c = divmod(int(cells[j]), 4)
            images[i, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8] = patches[part] + rng.normal(0, 20, size=(8, 8))
    images = np.clip(images, 0, 255).astype(np.uint8)
    labels = np.repeat(np.arange(classes), per_class)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "store.npz", images=images)
    split, fold = split_classes(labels, np.arange(classes // 2, classes), 0.0, seed)
    roles = np.array(["both"] * len(labels), dtype=object)
    info = {"name": "attributes", "array_store": "store.npz", "channels": 1, "image_size": 32, "protocol": "self"}
    write_manifest(out, Manifest([f"#{i}" for i in range(len(labels))], labels, split, roles, fold, info=info))
    return out


@pytest.fixture
def blob_dataset(tmp_path) -> Path:
    return make_blob_dataset(tmp_path / "prepared")


def tiny_train_overrides(prepared: Path, iterations: int = 12) -> list[str]:
    return [
        f"data.prepared={prepared}",
        f"train.iterations={iterations}",
        "train.checkpoint_every=4",
        "train.eval_every=1000",
        "train.progress=false",
        "sampler.classes_per_batch=6",
        "sampler.images_per_class=4",
    ]
