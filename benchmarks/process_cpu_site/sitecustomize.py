"""Loaded by every Python process that has benchmarks/process_cpu_site on its PYTHONPATH: with
XBML_PROC_LOG set, each process appends one JSON line at exit (its argv, its own CPU time,
the test that started it). `benchmarks/process_cpu.py` sums them by command; see its docstring."""

import os

_log = os.environ.get("XBML_PROC_LOG")
if _log:
    import atexit
    import json
    import resource
    import sys
    import time

    _start = time.time()

    def _write() -> None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        record = {"pid": os.getpid(), "argv": [str(a) for a in sys.argv[:8]], "cpu": r.ru_utime + r.ru_stime,
                  "wall": time.time() - _start, "test": os.environ.get("PYTEST_CURRENT_TEST", ""),
                  "modules": len(sys.modules)}
        with open(_log, "a") as f:  # one short append per process: lines do not interleave
            f.write(json.dumps(record) + "\n")

    atexit.register(_write)
