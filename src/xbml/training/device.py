"""Where and how a job computes: device, threads, bf16 autocast, channels_last."""

from __future__ import annotations

import contextlib
import os

import torch

from xbml.errors import ConfigError


def job_threads(requested: int = 0) -> int:
    """Threads this job may use: explicit > scheduler's allocation > 1.

    Small nets ran faster on 1 thread than on 2 here, and two jobs side by side
    each slow down when they oversubscribe the cores, so the default is the
    allocation the scheduler (Snakemake `threads`, Slurm cpus-per-task) gave us.
    """
    if requested > 0:
        return requested
    for var in ("XBML_THREADS", "SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        value = os.environ.get(var)
        if value and value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def torch_threads(allocation: int, loader_workers: int) -> int:
    """Torch threads of a job whose loader has `loader_workers` processes: its CPUs (`job_threads`)
    minus one per worker, at least 1, so that torch threads and loader workers do not
    oversubscribe the CPUs the scheduler gave the job (without workers: all of them, as before)."""
    return max(1, job_threads(allocation) - loader_workers)


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # may only be set once per process
        torch.set_num_interop_threads(max(1, min(n, 2)))


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available here; use 'auto' or 'cpu'")
    return device


def use_bf16(setting, device: torch.device) -> bool:
    if setting == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    if setting and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.amp is true but this GPU has no bf16 support; set train.amp: false")
    return bool(setting) and device.type == "cuda"


def use_channels_last(setting, device: torch.device) -> bool:
    if setting == "auto":
        return device.type == "cuda"
    return bool(setting)


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
