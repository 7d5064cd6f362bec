"""CPU time per test and per test file: a pytest plugin and its summary.

The plugin counts, around each test, the CPU time of the pytest process and of the children it
waited for (`getrusage`: self + children, user + sys), so subprocesses such as Snakemake, DVC and
training jobs are counted; processes started by a daemon (Slurm's jobs under slurmd) are not.
Each pytest-xdist worker writes its rows to $XBML_TEST_CPU/<worker>.json.

    XBML_TEST_CPU=/tmp/test-cpu PYTHONPATH=benchmarks python -m pytest -p pytest_cpu -n 3 --dist loadfile -q
    python benchmarks/pytest_cpu.py /tmp/test-cpu        # per file, then the slowest tests
    python benchmarks/pytest_cpu.py /tmp/test-cpu --write-durations tests/durations.json

tests/durations.json holds each file's wall time from such a run; tests/conftest.py starts the
longest files first, so that pytest-xdist does not leave an end-to-end run for last.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import time
from pathlib import Path

_rows: list[tuple[str, float, float]] = []


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


try:
    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        cpu, wall = _cpu(), time.perf_counter()
        yield
        _rows.append((item.nodeid, _cpu() - cpu, time.perf_counter() - wall))

    def pytest_sessionfinish(session):
        folder = os.environ.get("XBML_TEST_CPU")
        if folder and _rows:
            Path(folder).mkdir(parents=True, exist_ok=True)
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            (Path(folder) / f"{worker}.json").write_text(json.dumps(_rows))
except ImportError:  # the summary needs no pytest
    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="the folder given as XBML_TEST_CPU")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--write-durations", type=Path, metavar="JSON",
                    help="write each file's wall time (s, setup and teardown included) here, longest first")
    args = ap.parse_args()
    rows = [tuple(r) for f in sorted(Path(args.folder).glob("*.json")) for r in json.loads(f.read_text())]
    files: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
    for node, cpu, wall in rows:
        entry = files[node.split("::")[0]]
        entry[0] += cpu
        entry[1] += wall
        entry[2] += 1
    print(f"{len(rows)} tests: CPU {sum(r[1] for r in rows):.0f} s, wall summed over workers {sum(r[2] for r in rows):.0f} s")
    print(f"{'CPU s':>8} {'wall s':>8} {'tests':>6}  file")
    for name, (cpu, wall, n) in sorted(files.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"{cpu:8.1f} {wall:8.1f} {n:6d}  {name}")
    if args.write_durations:
        walls = {name: round(wall, 1) for name, (_, wall, _) in sorted(files.items(), key=lambda kv: -kv[1][1])}
        args.write_durations.write_text(json.dumps(walls, indent=1) + "\n")
    print(f"\n{'CPU s':>8} {'wall s':>8}  test")
    for node, cpu, wall in sorted(rows, key=lambda r: -r[1])[: args.top]:
        print(f"{cpu:8.1f} {wall:8.1f}  {node}")


if __name__ == "__main__":
    main()
