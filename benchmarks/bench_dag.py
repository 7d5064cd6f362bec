"""How well a DAG run used the machine: its wall time against the CPU time of every process it
started, over the cores (1.0 = every core busy all the time).

Runs the given command (default: the default DAG) and reports two CPU times:
- every process it started (Snakemake, its jobs and their children, as the kernel counts them for
  waited-for children: exact), which is the bound the wall time is compared with;
- the jobs' own, from the Snakemake `benchmark:` files the run wrote (their `cpu_time` column).
  Snakemake samples a job's process tree every 0.5 s for its first 30 samples, then every 30 s
  (snakemake.benchmark.BENCHMARK_INTERVAL), so a long job's last seconds of CPU are missed: this
  sum is a lower bound, up to ~30 s short per long job. Jobs without a benchmark file are not
  counted; the script says how many files it found.
Run from a fresh clone: python benchmarks/bench_dag.py --cores 2 -- snakemake --cores 8 all
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import time
from pathlib import Path


def cpu_seconds(files: list[Path]) -> float:
    total = 0.0
    for path in files:
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        total += sum(float(r["cpu_time"]) for r in rows if r.get("cpu_time") not in (None, "", "NA"))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", type=int, default=os.cpu_count(), help="cores of this machine")
    ap.add_argument("--results", default="results", help="where the rules write benchmarks/ folders")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the DAG command (after --)")
    args = ap.parse_args()
    command = [c for c in args.command if c != "--"] or ["snakemake", "--cores", "8", "all"]
    start = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True)
    wall = time.time() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    files = [p for p in Path(args.results).glob("*/benchmarks/**/*.tsv") if p.stat().st_mtime >= start]
    cpu = cpu_seconds(files)
    bound = total / args.cores
    print(f"command: {' '.join(command)}")
    print(f"wall time {wall:.0f} s; CPU time of every process it started {total:.0f} s")
    print(f"{len(files)} jobs' benchmark files; their sampled CPU time {cpu:.0f} s (a lower bound, see above)")
    print(f"{args.cores}-core bound (all CPU time / {args.cores} cores) {bound:.0f} s; "
          f"wall / bound = {wall / max(bound, 1e-9):.2f}x")


if __name__ == "__main__":
    main()
