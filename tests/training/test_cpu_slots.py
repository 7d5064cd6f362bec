"""CPU training slots: at most N trainings at once per set of CPUs, released by the kernel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from xbml.training.cpu_slots import cpu_slot, slot_count, usable_cpus

HOLD = """
import sys, time
from xbml.training.cpu_slots import cpu_slot
with cpu_slot(1, poll_s=0.05) as slot:
    print(f"slot {slot}", flush=True)
    time.sleep(float(sys.argv[1]))
print("released", flush=True)
"""


def _start(seconds: float, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLD, str(seconds)], stdout=subprocess.PIPE, text=True, env=env)


def test_slots_follow_the_cpus_and_the_setting(monkeypatch):
    monkeypatch.delenv("XBML_CPU_SLOTS", raising=False)
    assert slot_count(1) == len(usable_cpus()) and slot_count(len(usable_cpus()) * 4) == 1
    monkeypatch.setenv("XBML_CPU_SLOTS", "off")
    assert slot_count(1) is None
    with cpu_slot(1) as slot:
        assert slot is None
    monkeypatch.setenv("XBML_CPU_SLOTS", "3")
    assert slot_count(1) == 3


def test_a_second_training_waits_for_the_slot_and_a_killed_holder_frees_it(tmp_path):
    env = {**os.environ, "XBML_CPU_SLOTS": "1", "TMPDIR": str(tmp_path)}  # a slot folder of this test's own
    holder = _start(30, env)
    assert holder.stdout.readline().strip() == "slot 0"
    waiter = _start(0, env)
    time.sleep(1.5)
    assert waiter.poll() is None  # still waiting for the one slot
    holder.send_signal(signal.SIGKILL)  # the kernel drops its lock
    holder.wait()
    out, _ = waiter.communicate(timeout=30)
    assert out.split("\n")[:2] == ["slot 0", "released"]
