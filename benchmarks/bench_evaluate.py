"""Benchmark `python -m xbml evaluate` against pytorch-metric-learning's AccuracyCalculator.

    .venv/bin/python benchmarks/bench_evaluate.py [--n 60000] [--dim 128] [--rounds 3]

Data: SOP-sized clustered embeddings (60,000 x 128 float32, L2-normalised,
~11k classes of 2-12 items, fewer large classes than small ones, stored class
by class as the SOP test split is; --shuffle stores them in random order).

Each method runs in its own subprocess, alternated (xbml, AC, xbml, AC, ...),
`--rounds` times; per method the median wall time of the whole process
(interpreter start, imports, reading the file, the search and the metrics) and
its peak RSS (from wait4) are reported, plus the in-process compute time.
Other processes on the machine slow both alike only if they are measured in
the same period, hence the alternation and the ratios.

AccuracyCalculator is run as the method doc prescribes: its default faiss k-NN,
include=(mean_average_precision_at_r, r_precision, precision_at_1),
avg_of_avgs=False, query = reference with ref_includes_query, k="max_bin_count"
(the default k=None would search all N-1 neighbours of every item), on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("map_at_r", "r_precision", "precision_at_1")

AC_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from xbml.evaluation import l2_normalise
with np.load(sys.argv[1]) as z:
    x, y = l2_normalise(z["embeddings"]), z["labels"]
t1 = time.perf_counter()
calc = AccuracyCalculator(
    include=("mean_average_precision_at_r", "r_precision", "precision_at_1"),
    avg_of_avgs=False, k="max_bin_count", device=torch.device("cpu"),
)
acc = calc.get_accuracy(x, y)
t2 = time.perf_counter()
json.dump({"map_at_r": acc["mean_average_precision_at_r"], "r_precision": acc["r_precision"],
           "precision_at_1": acc["precision_at_1"], "compute_seconds": t2 - t1}, open(sys.argv[2], "w"))
"""


def sop_like(n: int, dim: int, seed: int, shuffle: bool) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors: class centre + noise, class sizes 2-12 (p ~ 0.84^size, mean ~5.4)."""
    rng = np.random.default_rng(seed)
    sizes_all = np.arange(2, 13)
    p = 0.84**sizes_all
    sizes = rng.choice(sizes_all, size=n, p=p / p.sum())
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
    sizes[-1] -= sizes.sum() - n
    if sizes[-1] < 2:  # fold a too-small last class into the previous one
        sizes[-2] += sizes[-1]
        sizes = sizes[:-1]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.standard_normal((len(sizes), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # per-class spread, so that some classes are tight and some overlap others
    spread = rng.uniform(1.0, 2.2, size=len(sizes)).astype(np.float32)[labels, None]
    x = centres[labels] + spread * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim, dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if shuffle:
        order = rng.permutation(n)
        x, labels = x[order], labels[order]
    return np.ascontiguousarray(x, dtype=np.float32), labels.astype(np.int64)


def run_child(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one subprocess."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
    return wall, usage.ru_maxrss * 1024  # Linux: kilobytes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shuffle", action="store_true", help="store the items in random order, not class by class")
    ap.add_argument("--threads", type=int, default=None, help="xbml evaluate --threads (default: all CPUs)")
    ap.add_argument("--chunk-size", type=int, default=None, help="xbml evaluate --chunk-size")
    args = ap.parse_args()

    from xbml.evaluation import save_embeddings

    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench_evaluate.") as tmp:
        tmp = Path(tmp)
        x, y = sop_like(args.n, args.dim, args.seed, args.shuffle)
        emb = tmp / "emb.npz"
        save_embeddings(emb, x, y)
        sizes = np.bincount(y)
        print(
            f"data: {len(x)} x {x.shape[1]} float32, {len(sizes)} classes of {sizes.min()}-{sizes.max()} "
            f"({'shuffled' if args.shuffle else 'class by class'}); CPUs available: {len(os.sched_getaffinity(0))}; "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        xbml_cmd = [py, "-m", "xbml", "evaluate", str(emb), "--out", str(tmp / "xbml.json")]
        if args.threads:
            xbml_cmd += ["--threads", str(args.threads)]
        if args.chunk_size:
            xbml_cmd += ["--chunk-size", str(args.chunk_size)]
        ac_cmd = [py, "-c", AC_SCRIPT, str(emb), str(tmp / "ac.json")]
        runs: dict[str, list[tuple[float, int, float]]] = {"xbml": [], "ac": []}
        for r in range(args.rounds):
            for name, cmd in (("xbml", xbml_cmd), ("ac", ac_cmd)):
                wall, rss = run_child(cmd)
                out = json.loads((tmp / f"{name}.json").read_text())
                compute = out["seconds"] if name == "xbml" else out["compute_seconds"]
                runs[name].append((wall, rss, compute))
                print(
                    f"round {r + 1} {name:4s}: {wall:6.2f} s process, {compute:6.2f} s compute, "
                    f"peak RSS {rss / 2**20:7.0f} MiB (load avg {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
        mx = json.loads((tmp / "xbml.json").read_text())
        ma = json.loads((tmp / "ac.json").read_text())

    med = {m: [statistics.median(v[i] for v in runs[m]) for i in range(3)] for m in runs}
    print()
    print(f"{'':22s}{'xbml evaluate':>16s}{'AccuracyCalculator':>20s}")
    print(f"{'process wall (median)':22s}{med['xbml'][0]:14.2f} s{med['ac'][0]:18.2f} s")
    print(f"{'compute (median)':22s}{med['xbml'][2]:14.2f} s{med['ac'][2]:18.2f} s")
    print(f"{'peak RSS (median)':22s}{med['xbml'][1] / 2**20:12.0f} MiB{med['ac'][1] / 2**20:16.0f} MiB")
    speed = med["ac"][0] / med["xbml"][0]
    mem = med["xbml"][1] / med["ac"][1]
    print(f"speed-up (process wall): {speed:.2f}x   [target >= 4x: {'met' if speed >= 4 else 'NOT met'}]")
    print(f"speed-up (compute only): {med['ac'][2] / med['xbml'][2]:.2f}x")
    print(f"memory fraction (peak RSS): 1/{1 / mem:.1f} = {mem:.4f}   [target <= 1/20: {'met' if mem <= 0.05 else 'NOT met'}]")
    diffs = {k: abs(mx[k] - ma[k]) for k in KEYS}
    for k in KEYS:
        print(f"  {k:15s} xbml {mx[k]:.9f}  AC {ma[k]:.9f}  |diff| {diffs[k]:.1e}")
    worst = max(diffs.values())
    print(f"metrics equal (|diff| <= 1e-6): {'yes' if worst <= 1e-6 else 'NO'} (max |diff| {worst:.1e})")
    print(f"xbml Recall@1,2,4,8: {mx['recall_at_1']:.4f} {mx['recall_at_2']:.4f} {mx['recall_at_4']:.4f} {mx['recall_at_8']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
