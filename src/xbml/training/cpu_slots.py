"""At most as many CPU trainings at once as the CPUs can run: one slot per `threads` CPUs.

A workflow started with more cores than the machine has (`snakemake --cores 8 all` on two
cores) would otherwise run eight one-thread trainings side by side, and each step then costs
about twice the CPU time it costs with one training per core (measured on this project's 2-core
machines: 76 ms against 38 ms of CPU per glyph step): the processes evict each other's caches.
So a training on the CPU first takes a slot (an exclusive `fcntl` lock on one of N files, N =
usable CPUs // threads) and holds it until it ends; the others wait, sleeping. The kernel
releases a slot when its holder dies (kill -9 included), so nothing is left to clean up. Slots
are per user and per set of CPUs (a Slurm job's CPUs are its own set), on this machine's temporary
folder. GPU trainings take no slot. XBML_CPU_SLOTS=off turns it off; a number sets N.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)
VARIABLE = "XBML_CPU_SLOTS"


def usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def slot_count(threads: int) -> int | None:
    """How many trainings of `threads` threads may run at once here; None when slots are off."""
    setting = os.environ.get(VARIABLE, "").strip().lower()
    if setting in ("off", "0", "false", "no"):
        return None
    if setting.isdigit():
        return int(setting)
    return max(1, len(usable_cpus()) // max(1, threads))


def _folder() -> Path:
    cpus = ",".join(str(c) for c in usable_cpus())
    digest = hashlib.sha256(cpus.encode()).hexdigest()[:10]
    folder = Path(tempfile.gettempdir()) / f"xbml-cpu-slots-{os.getuid()}" / digest
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def cpu_slot(threads: int, poll_s: float = 0.5):
    """Hold one of the machine's CPU training slots for the `with` block (waiting for one)."""
    count = slot_count(threads)
    if count is None:
        yield None
        return
    folder = _folder()
    handles = []
    try:
        waited = False
        while True:
            for k in range(count):
                handle = open(folder / f"slot{k}.lock", "a+")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                handles.append(handle)
                if waited:
                    log.info("got CPU slot %d of %d", k, count)
                yield k
                return
            if not waited:
                log.info("all %d CPU training slots of this machine are busy (%s=off to run anyway); waiting",
                         count, VARIABLE)
                waited = True
            time.sleep(poll_s)
    finally:
        for handle in handles:
            handle.close()  # closing releases the lock
