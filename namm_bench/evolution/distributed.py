"""Spreading a population over ``torchrun`` ranks (gloo on CPU, nccl on GPU); one process works alone."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world(device: str) -> World:
    """Join the process group ``torchrun`` describes in the environment, if any."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if device.startswith("cuda"):  # nccl talks to the current device: this rank's own GPU
        index = torch.device(device).index
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) if index is None else index)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def close_world(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def broadcast(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``tensor`` on every rank (CPU tensors; nccl gets a device copy)."""
    if world.size == 1:
        return tensor
    moved = _for_backend(tensor)
    dist.broadcast(moved, src=0)
    return moved.to(tensor.device)


def sum_over_ranks(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over ranks. Each rank fills only its own entries, so the sum is exact."""
    if world.size == 1:
        return tensor
    moved = _for_backend(tensor)
    dist.all_reduce(moved, op=dist.ReduceOp.SUM)
    return moved.to(tensor.device)


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def _for_backend(tensor: torch.Tensor) -> torch.Tensor:
    if dist.get_backend() == "nccl":
        return tensor.to(f"cuda:{torch.cuda.current_device()}")
    return tensor.clone()
