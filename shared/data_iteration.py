"""Deterministic, resumable batch iteration over map-style datasets (the trainer's ``make_batches``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from shared.distributed import current_context

MakeBatches = Callable[[int, int], Iterator[Any]]


def batches_from_dataset(
    dataset: Sequence[Any],
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    drop_last: bool = True,
    collate: Callable[[list[Any]], Any] = default_collate,
) -> MakeBatches:
    """Return ``make_batches(epoch, start_batch)`` for the trainer.

    Each epoch uses a permutation seeded by ``(seed, epoch)``, so an epoch's batch order is the same in an
    interrupted and an uninterrupted run; ``start_batch`` skips batches without touching their samples.
    Under torch.distributed, ``batch_size`` is per rank: each global batch of ``batch_size × world_size``
    samples is cut into contiguous per-rank slices, so the global batches do not depend on the world size.

    Args:
        dataset: a map-style dataset (``len`` and ``__getitem__``).
        batch_size: samples per rank per batch.
        seed: base seed of the per-epoch shuffles.
        shuffle: shuffle each epoch (False: dataset order).
        drop_last: drop the final incomplete global batch.
        collate: turns a list of samples into a batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")

    def make_batches(epoch: int, start_batch: int = 0) -> Iterator[Any]:
        context = current_context()
        global_batch = batch_size * context.world_size
        order = np.random.default_rng([seed, epoch]).permutation(len(dataset)) if shuffle else np.arange(len(dataset))
        full_batches = len(order) // global_batch
        total = full_batches if drop_last or len(order) % global_batch == 0 else full_batches + 1
        for index in range(start_batch, total):
            chunk = order[index * global_batch : (index + 1) * global_batch]
            mine = chunk[context.rank * batch_size : (context.rank + 1) * batch_size]
            yield collate([dataset[int(i)] for i in mine])

    return make_batches


class TensorDictDataset(torch.utils.data.Dataset):
    """Map-style dataset over a dict of equally long tensors (or lists); items are dicts of rows."""

    def __init__(self, columns: dict[str, Any]) -> None:
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"columns differ in length: {lengths}")
        self.columns = columns
        self.length = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {name: values[index] for name, values in self.columns.items()}
