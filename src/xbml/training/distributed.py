"""Optional multi-process training with torch's own launcher (torchrun).

Under `torchrun --nproc_per_node N`, rank r at iteration i trains on the
sampler's batch i * N + r (each a full, class-disjoint-halves batch), and DDP
averages the gradients: the effective batch is N times the configured one.
Without torchrun everything here is a no-op.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as tdist

from xbml.errors import ConfigError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def init() -> None:
    if world_size() > 1 and not tdist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        tdist.init_process_group(backend=backend)


def shutdown() -> None:
    if tdist.is_initialized():
        tdist.destroy_process_group()


def barrier() -> None:
    if tdist.is_initialized():
        tdist.barrier()


def device_for_rank(device: torch.device) -> torch.device:
    if device.type == "cuda" and world_size() > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        visible = torch.cuda.device_count()
        if local >= visible:
            # two ranks on one GPU would fail deep inside NCCL ("duplicate GPU"); say what to change
            raise ConfigError(
                f"torchrun started local rank {local} but only {visible} GPU(s) are visible to this job; "
                f"start at most {visible} processes (--nproc_per_node) or ask the scheduler for more GPUs"
            )
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return device


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not tdist.is_initialized():
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


class RankedSampler:
    """The sampler's batches interleaved over ranks; identical to the sampler for one process."""

    def __init__(self, sampler, rank_: int, world: int):
        self.sampler, self.rank, self.world = sampler, rank_, world

    @property
    def split(self) -> int:
        return self.sampler.split

    def batch(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        return self.sampler.batch(iteration * self.world + self.rank)
