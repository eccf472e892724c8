"""torch.distributed glue: process-group set-up from the launcher's environment, feature gathering, and the
few collective patterns every command needs under ``torchrun`` / ``accelerate launch``.

Launch with ``torchrun`` or ``accelerate launch``; they set ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``; nothing here
spawns processes. On a CPU machine ``accelerate launch --config_file shared/accelerate/cpu.yaml`` starts the
processes (accelerate's own CPU mode needs MPI for more than one process).

The patterns:

* :func:`main_process_first` — one-time preparation (building built-in data, a feature cache) runs on rank 0
  while the other ranks wait at a barrier, then they run the same code, which finds the result made. If rank
  0 fails, the other ranks stop with an error instead of waiting forever.
* :func:`on_main_process` — a computation (evaluation) runs once, on rank 0, and its result is sent to every
  rank; inside it, and inside :func:`main_process_first`, shard streams read the whole shard set
  (:func:`whole_data_view`) instead of this rank's share.
* :func:`rank_slice`, :func:`gather_to_main` and :func:`encode_across_ranks` — split a list of items between
  ranks, encode each slice, and collect the results in item order on rank 0 (``embed`` commands, so that each
  vector is written to the store exactly once, by rank 0).
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn

# True while this process works alone on behalf of the whole job (preparation, evaluation on rank 0): data
# readers take every shard and every sample, and the core's collectives (feature gathering) are not used.
_WHOLE_DATA_VIEW: contextvars.ContextVar[bool] = contextvars.ContextVar("whole_data_view", default=False)


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
        # Rank 0 may prepare data for a long time while the others wait in a collective (main_process_first):
        # wait up to DIST_TIMEOUT_MINUTES (default 180) instead of torch's 30 (gloo) or 10 (nccl) minutes.
        timeout = datetime.timedelta(minutes=float(os.environ.get("DIST_TIMEOUT_MINUTES", "180")))
        dist.init_process_group(backend=chosen, timeout=timeout)
        atexit.register(_leave_process_group)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


def _leave_process_group() -> None:
    # A process that exits with its group still open can abort in gloo's teardown ("terminate called without an
    # active exception") after its work is done; leave the group first.
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current_context() -> DistributedContext:
    """The context of an already-initialized process group (single process if none, or inside
    :func:`whole_data_view`, where this process works alone)."""
    if _WHOLE_DATA_VIEW.get():
        return DistributedContext()
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


T = TypeVar("T")


def launched_world_size() -> int:
    """``WORLD_SIZE`` as the launcher set it (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True on rank 0 (or without a launcher): the rank that writes files, the store and the summary."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def ensure_process_group() -> DistributedContext:
    """Join the launcher's process group if there is one and it is not joined yet (idempotent).

    Inside :func:`whole_data_view` the process works alone: a single-process context.
    """
    if launched_world_size() > 1 and not _WHOLE_DATA_VIEW.get():
        return init_distributed()
    return current_context()


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if current_context().enabled:
        dist.barrier()


@contextlib.contextmanager
def whole_data_view() -> Iterator[None]:
    """Inside this block this process works alone: shard streams read every shard (no split by node) and
    :func:`current_context` reports a single process (so the contrastive loss gathers nothing, batches are not
    split). Collectives must not be called inside."""
    token = _WHOLE_DATA_VIEW.set(True)
    try:
        yield
    finally:
        _WHOLE_DATA_VIEW.reset(token)


def reads_whole_data() -> bool:
    """True inside :func:`whole_data_view` (data readers consult it before splitting by node)."""
    return _WHOLE_DATA_VIEW.get()


def broadcast_object(value: T | None, source: int = 0) -> T:
    """``value`` as rank ``source`` has it, on every rank (picklable objects; no-op for one process)."""
    context = current_context()
    if not context.enabled:
        return value  # type: ignore[return-value]
    holder = [value if context.rank == source else None]
    dist.broadcast_object_list(holder, src=source)
    return holder[0]  # type: ignore[return-value]


class MainProcessFailed(RuntimeError):
    """Raised on the other ranks when rank 0 failed in a :func:`main_process_first` or :func:`on_main_process` block."""


@contextlib.contextmanager
def main_process_first(what: str = "preparation") -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (which wait at a barrier meanwhile).

    Use it around one-time preparation that the block skips when its output already exists (building the
    built-in data set, a feature cache): rank 0 builds, the others then find it built. Inside the block shard
    streams read every shard (:func:`whole_data_view`). Joins the launcher's process group if needed.

    If the block raises on rank 0, rank 0 re-raises its error and the other ranks raise
    :class:`MainProcessFailed` (instead of waiting at the barrier forever).

    Args:
        what: Names the preparation in the other ranks' error message.
    """
    context = ensure_process_group()
    if not context.enabled:
        with whole_data_view():
            yield
        return
    if context.is_main:
        failure: BaseException | None = None
        try:
            with whole_data_view():
                yield
        except BaseException as error:
            failure = error
            raise
        finally:
            broadcast_object(None if failure is None else f"{type(failure).__name__}: {failure}")
    else:
        failed_with = broadcast_object(None)
        if failed_with is not None:
            raise MainProcessFailed(f"rank 0 failed during {what}: {failed_with}")
        with whole_data_view():
            yield


def on_main_process(compute: Callable[[], T], what: str = "evaluation") -> T:
    """``compute()`` run once, on rank 0, seeing the whole data (:func:`whole_data_view`); its result on every rank.

    The other ranks wait for the result (it must be picklable). If ``compute`` raises on rank 0, rank 0
    re-raises and the other ranks raise :class:`MainProcessFailed`. ``compute`` must not use collectives.
    """
    context = ensure_process_group()
    if not context.enabled:
        with whole_data_view():
            return compute()
    if context.is_main:
        try:
            with whole_data_view():
                result = compute()
        except BaseException as error:
            broadcast_object(("failed", f"{type(error).__name__}: {error}"))
            raise
        broadcast_object(("ok", result))
        return result
    status, payload = broadcast_object(None)
    if status != "ok":
        raise MainProcessFailed(f"rank 0 failed during {what}: {payload}")
    return payload


def per_rank_batch_size(global_batch_size: int) -> int:
    """This rank's share of a global batch (``global // world_size``, at least 1): for code whose batch is
    meant for the whole job (e.g. "the whole data set as one batch"), so that it stays the same under torchrun.
    """
    return max(1, global_batch_size // current_context().world_size)


def rank_slice(count: int, context: DistributedContext | None = None) -> range:
    """The contiguous part of ``range(count)`` this rank handles; the parts cover it exactly once, in order.

    Sizes differ by at most one; a rank may get an empty range when ``count < world_size``.
    """
    context = context or current_context()
    per_rank, extra = divmod(count, context.world_size)
    start = context.rank * per_rank + min(context.rank, extra)
    return range(start, start + per_rank + (1 if context.rank < extra else 0))


def gather_to_main(part: T) -> list[T] | None:
    """Every rank's ``part`` (picklable) as a list in rank order on rank 0; None on the other ranks."""
    context = current_context()
    if not context.enabled:
        return [part]
    parts: list[Any] | None = [None] * context.world_size if context.is_main else None
    dist.gather_object(part, parts, dst=0)
    return parts


def all_gather_objects(part: T) -> list[T]:
    """Every rank's ``part`` (picklable) as a list in rank order, on every rank."""
    context = current_context()
    if not context.enabled:
        return [part]
    parts: list[Any] = [None] * context.world_size
    dist.all_gather_object(parts, part)
    return parts


def encode_across_ranks(items: Sequence[T], encode: Callable[[Sequence[T]], Sequence[Any]]) -> list[Any] | None:
    """Split ``items`` between ranks, ``encode`` each rank's slice, and collect the results in item order on rank 0.

    For ``embed`` commands: every rank encodes its own contiguous slice (a rank may get none), rank 0 receives
    all results and writes each vector exactly once. Joins the launcher's process group if needed.

    Args:
        items: What to encode, the same list on every rank.
        encode: ``encode(slice) -> results`` with one result per item, in order (tensors are moved to the CPU).

    Returns:
        One result per item, in ``items`` order, on rank 0; None on the other ranks.
    """
    context = ensure_process_group()
    mine = rank_slice(len(items), context)
    local = list(encode(items[mine.start : mine.stop])) if len(mine) else []
    if len(local) != len(mine):
        raise ValueError(f"encode returned {len(local)} results for {len(mine)} items")
    local = [value.detach().cpu() if isinstance(value, torch.Tensor) else value for value in local]
    parts = gather_to_main(local)
    if parts is None:
        return None
    return [value for part in parts for value in part]


def rows_across_ranks(count: int, compute: Callable[[range], dict[str, Any]]) -> dict[str, np.ndarray] | None:
    """Split rows ``0..count-1`` between ranks, ``compute`` each rank's rows, and join the columns on rank 0.

    For ``embed`` commands whose encoder maps a range of rows to columns of arrays (one row per item): every rank
    computes its contiguous rows, rank 0 receives all of them in row order and writes each once.

    Args:
        count: Rows in total (the same on every rank).
        compute: ``compute(rows) -> {column: array with len(rows) rows}``.

    Returns:
        ``{column: array of count rows}`` on rank 0; None on the other ranks.
    """
    context = ensure_process_group()
    mine = rank_slice(count, context)
    part = {name: np.asarray(value) for name, value in compute(mine).items()} if len(mine) else None
    parts = gather_to_main(part)
    if parts is None:
        return None
    filled = [part for part in parts if part is not None]
    if not filled:
        return {}
    return {name: np.concatenate([part[name] for part in filled]) for name in filled[0]}
