"""torchrun support: initialise torch.distributed from the environment torchrun sets, tear it down after."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def distributed(device: str = "auto") -> Iterator[str]:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA); yields the device to use."""
    if not launched_by_torchrun() or dist.is_initialized():
        yield device
        return
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    else:
        device = "cpu"
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    try:
        yield device
        # Every rank tears down together. Rank 0 alone builds the bank, calibrates and writes the run after
        # training. Meanwhile a rank that has already destroyed its gloo group can abort in gloo's teardown
        # ("terminate called without an active exception"), which fails the whole torchrun job. On an
        # exception this is skipped; torchrun then stops the other ranks.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
