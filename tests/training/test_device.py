"""A job's CPUs split between loader workers and torch threads, so they never oversubscribe."""

from __future__ import annotations

from xbml.training.device import torch_threads


def test_loader_workers_take_their_cores_from_the_torch_threads(monkeypatch):
    for var in ("XBML_THREADS", "SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    assert torch_threads(8, 6) == 2  # the GPU profiles: 8 CPUs, real_images.yaml's 6 workers
    assert torch_threads(8, 0) == 8  # no loader processes (the glyphs): every CPU, as before
    assert torch_threads(4, 6) == 1  # never below one thread
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "10")
    assert torch_threads(0, 6) == 4  # the scheduler's allocation when no count is given
