"""How well a DAG run used the machine: its wall time against the sum of its jobs' CPU times
over the cores (1.0 = every core busy all the time).

Runs the given command (default: the default DAG), then reads the Snakemake `benchmark:` files
the run wrote (their `cpu_time` column). Jobs of rules without a benchmark file are not counted,
and the script says how many files it found.
Run from a fresh clone: python benchmarks/bench_dag.py --cores 2 -- snakemake --cores 8 all
"""

from __future__ import annotations

import argparse
import csv
import os
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
    subprocess.run(command, check=True)
    wall = time.time() - start
    files = [p for p in Path(args.results).glob("*/benchmarks/**/*.tsv") if p.stat().st_mtime >= start]
    cpu = cpu_seconds(files)
    bound = cpu / args.cores
    print(f"command: {' '.join(command)}")
    print(f"wall time {wall:.0f} s; {len(files)} jobs' benchmark files; their CPU time {cpu:.0f} s")
    print(f"2-core bound (CPU time / {args.cores} cores) {bound:.0f} s; wall / bound = {wall / max(bound, 1e-9):.2f}x")


if __name__ == "__main__":
    main()
