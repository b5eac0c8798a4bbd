"""Distributed data parallel of the audio training: under ``torchrun`` (env ``WORLD_SIZE`` > 1)
a process group (gloo on CPU, NCCL on CUDA), the device of each rank, and sums over ranks."""

from __future__ import annotations

import os

import torch

from .._run import resolve_device

__all__ = ["allreduce_sum", "dist_group", "setup_distributed"]


def dist_group():
    """``torch.distributed`` when a process group is initialised (under torchrun), else None."""
    import torch.distributed as dist
    return dist if dist.is_available() and dist.is_initialized() else None


def setup_distributed(device_name: str):
    """Initialises the process group under torchrun; returns (rank, world, device, created)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        use_cuda = device_name != "cpu" and not device_name.startswith("cpu") \
            and torch.cuda.is_available()
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        created = True
    else:
        created = False
    d = dist_group()
    rank, world = (d.get_rank(), d.get_world_size()) if d else (0, 1)
    if device_name == "auto":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) \
            if torch.cuda.is_available() else torch.device("cpu")
    else:
        device = resolve_device(device_name)
        if device.type == "cuda" and d is not None and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return rank, world, device, created


def allreduce_sum(values: list[float], device) -> list[float]:
    """The sums of ``values`` over all processes (the values themselves in one process)."""
    d = dist_group()
    if d is None:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    d.all_reduce(t)
    return t.tolist()
