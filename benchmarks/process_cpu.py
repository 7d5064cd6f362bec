"""CPU time by kind of Python process (`xbml train`, `xbml report`, `snakemake -n`, ...) over a
whole run: which start-ups and steps the test suite or a DAG spends its CPU on.

Every Python process started with benchmarks/process_cpu_site on its PYTHONPATH logs its own CPU at
exit (process_cpu_site/sitecustomize.py); processes killed by a signal, and non-Python ones (Slurm's
daemons, git), are not counted. The environment reaches Snakemake's jobs and the tests'
subprocesses, which inherit it (an absolute path: they run in other folders).

    XBML_PROC_LOG=/tmp/proc.log PYTHONPATH=$PWD/benchmarks/process_cpu_site python -m pytest -n 3 --dist loadfile -q
    python benchmarks/process_cpu.py /tmp/proc.log            # per kind, then per test
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path


def kind(argv: list[str]) -> str:
    exe = Path(argv[0]).name if argv else ""
    if exe == "__main__.py" and len(argv) > 1:
        return f"xbml {argv[1]}"
    if exe == "snakemake":
        return "snakemake" + "".join(f" {f}" for f in ("-n", "--touch", "--report") if f in argv)
    if exe in ("-c", ""):
        return "python -c (pytest workers, spawned helpers)"
    return exe + (f" {argv[1]}" if len(argv) > 1 and not argv[1].startswith(("/", "-")) else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path, help="the file given as XBML_PROC_LOG")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.log.read_text().splitlines() if line.strip()]
    by_kind = collections.defaultdict(lambda: [0, 0.0])
    by_test = collections.defaultdict(float)
    for r in rows:
        k = by_kind[kind(r["argv"])]
        k[0] += 1
        k[1] += r["cpu"]
        by_test[r["test"].split(" ")[0] or "(outside a test)"] += r["cpu"]
    print(f"{len(rows)} processes, {sum(r['cpu'] for r in rows):.0f} CPU-s")
    print(f"{'CPU s':>8} {'procs':>6} {'each':>6}  kind")
    for name, (n, cpu) in sorted(by_kind.items(), key=lambda x: -x[1][1])[: args.top]:
        print(f"{cpu:8.1f} {n:6d} {cpu / n:6.2f}  {name}")
    print(f"\n{'CPU s':>8}  test (its processes)")
    for name, cpu in sorted(by_test.items(), key=lambda x: -x[1])[: args.top]:
        print(f"{cpu:8.1f}  {name}")


if __name__ == "__main__":
    main()
