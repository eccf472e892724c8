"""torch.distributed glue: process-group set-up from the launcher's environment and feature gathering.

Launch with ``torchrun`` or ``accelerate launch``; they set ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``; nothing here
spawns processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the rank that writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def init_distributed(backend: str | None = None) -> DistributedContext:
    """Join the process group described by the launcher's environment (no-op for a single process).

    Args:
        backend: ``"nccl"`` on CUDA, ``"gloo"`` on CPU; chosen automatically when None.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if chosen == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=chosen)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


def current_context() -> DistributedContext:
    """The context of an already-initialized process group (single process if none)."""
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistributedContext()


def gather_features(features: torch.Tensor, local_loss: bool, gather_with_grad: bool) -> torch.Tensor:
    """Concatenate ``features`` from all ranks along the batch dimension (rank order).

    With ``gather_with_grad`` the gather is differentiable (every rank's features receive gradients).
    Without it, a plain all-gather is used; unless ``local_loss``, this rank's slot is replaced by its
    own tensor so that its features keep their gradients (open_clip's convention).
    """
    context = current_context()
    if not context.enabled:
        return features
    if gather_with_grad:
        return torch.cat(dist_nn.all_gather(features), dim=0)
    gathered = [torch.zeros_like(features) for _ in range(context.world_size)]
    dist.all_gather(gathered, features)
    if not local_loss:
        gathered[context.rank] = features
    return torch.cat(gathered, dim=0)
