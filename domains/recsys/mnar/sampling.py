"""Minibatches of user–item pairs for the MNAR estimators, and the trainer's ``make_batches`` over them.

Batches are drawn at random with replacement; for the trainer, batch ``b`` of epoch ``e`` is drawn from a
generator seeded by ``(seed, e, b)``, so an interrupted and resumed fit sees the same batches as an
uninterrupted one. The batch size is the global one: under torch.distributed every rank draws the same global
batch and keeps its contiguous slice (:func:`shared.distributed.rank_slice`), so the ranks together see
exactly the one-process batch and DDP's gradient average equals the one-process gradient for a per-sample mean
loss whose slices are equally large (world size divides the batch size). An epoch is ``ceil(training clicks / batch size)`` batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from domains.recsys.mnar.feedback import ImplicitFeedback
from shared.distributed import DistributedContext, current_context, rank_slice

MakeBatches = Callable[[int, int], Iterator[dict[str, torch.Tensor]]]


@dataclass
class PairBatch:
    """A minibatch of user–item pairs with their training label and propensity."""

    users: torch.Tensor
    items: torch.Tensor
    labels: torch.Tensor
    propensity: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The batch as the trainer moves it: a dict of tensors."""
        return {"users": self.users, "items": self.items, "labels": self.labels, "propensity": self.propensity}


class PairSampler:
    """Draws minibatches of pairs for the pointwise losses.

    Two modes: uniform over the whole ``n_users × n_items`` grid, or positive/unlabeled balanced as in the
    authors' real-data code (``positive_fraction`` of each batch from the clicks, the rest uniform from the
    unclicked pairs of the grid).

    Args:
        feedback: the clicks (labels and propensities).
        positive_fraction: when set, the share of clicks in each batch (e.g. 0.5); otherwise uniform sampling.
        seed: seed of the sampler's own generator (used when no generator is passed to a draw).
    """

    def __init__(self, feedback: ImplicitFeedback, positive_fraction: float | None = None, seed: int = 0) -> None:
        if positive_fraction is not None and not 0 < positive_fraction < 1:
            raise ValueError(f"positive_fraction must lie in (0, 1), got {positive_fraction}")
        if positive_fraction is not None and feedback.users.size == 0:
            raise ValueError("positive/unlabeled sampling needs at least one click")
        self.feedback = feedback
        self.positive_fraction = positive_fraction
        self.rng = np.random.default_rng(seed)

    def _unclicked_keys(self, size: int, rng: np.random.Generator) -> np.ndarray:
        grid = self.feedback.n_users * self.feedback.n_items
        if self.feedback.users.size >= grid:
            raise ValueError("every pair is clicked: there are no unlabeled pairs to sample")
        clicked = self.feedback.keys
        out = np.empty(0, dtype=np.int64)
        while out.size < size:  # rejection sampling; clicks are a small share of any real grid
            draw = rng.integers(0, grid, size=2 * (size - out.size) + 16)
            position = np.minimum(np.searchsorted(clicked, draw), clicked.size - 1)
            out = np.concatenate([out, draw[clicked[position] != draw] if clicked.size else draw])
        return out[:size]

    def sample_keys(self, batch_size: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Draw ``batch_size`` flat pair keys (with replacement) from ``rng`` (default: the sampler's own)."""
        rng = self.rng if rng is None else rng
        if self.positive_fraction is not None:
            n_pos = int(round(batch_size * self.positive_fraction))
            pos = rng.integers(0, self.feedback.users.size, size=n_pos)
            return np.concatenate([self.feedback.keys[pos], self._unclicked_keys(batch_size - n_pos, rng)])
        return rng.integers(0, self.feedback.n_users * self.feedback.n_items, size=batch_size)

    def batch_for_keys(self, keys: np.ndarray, device: torch.device | str = "cpu") -> PairBatch:
        """Labels (clicks) and propensities of the given flat pair keys as tensors on ``device``."""
        users, items = keys // self.feedback.n_items, keys % self.feedback.n_items
        clicks, theta = self.feedback.lookup(users, items)
        return PairBatch(
            users=torch.as_tensor(users, device=device),
            items=torch.as_tensor(items, device=device),
            labels=torch.as_tensor(clicks, dtype=torch.float32, device=device),
            propensity=torch.as_tensor(theta, dtype=torch.float32, device=device),
        )

    def sample(
        self, batch_size: int, device: torch.device | str = "cpu", rng: np.random.Generator | None = None
    ) -> PairBatch:
        """Draw one minibatch."""
        return self.batch_for_keys(self.sample_keys(batch_size, rng), device)


def pairwise_batch(feedback: ImplicitFeedback, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """A UBPR minibatch: clicked pairs ``(u, i)`` and, for each, a uniformly drawn item ``j`` of the same user.

    Returns:
        ``users``, ``items`` (clicked), ``negatives`` (``j``), ``positive_propensity`` (θ_ui),
        ``negative_labels`` (``Y_uj``) and ``negative_propensity`` (θ_uj), as tensors.
    """
    if feedback.users.size == 0:
        raise ValueError("UBPR needs at least one click")
    pick = rng.integers(0, feedback.users.size, size=batch_size)
    users, items = feedback.users[pick], feedback.items[pick]
    negatives = rng.integers(0, feedback.n_items, size=batch_size)
    negative_clicks, negative_theta = feedback.lookup(users, negatives)
    return {
        "users": torch.as_tensor(users),
        "items": torch.as_tensor(items),
        "negatives": torch.as_tensor(negatives),
        "positive_propensity": torch.as_tensor(feedback.propensity[pick], dtype=torch.float32),
        "negative_labels": torch.as_tensor(negative_clicks, dtype=torch.float32),
        "negative_propensity": torch.as_tensor(negative_theta, dtype=torch.float32),
    }


def steps_per_epoch(n_clicks: int, batch_size: int) -> int:
    """Batches in one epoch: as many pairs as there are training clicks (at least one batch)."""
    return max(1, math.ceil(n_clicks / batch_size))


def seeded_batches(
    draw: Callable[[np.random.Generator], dict[str, torch.Tensor]], batches_per_epoch: int, seed: int
) -> MakeBatches:
    """The trainer's ``make_batches(epoch, start_batch)``: batch ``b`` of epoch ``e`` is ``draw(rng(seed, e, b))``,
    this rank's contiguous slice of it under torch.distributed (the whole batch for one process).

    Args:
        draw: turns a generator into one global batch (a dict of tensors with the same leading dimension).
        batches_per_epoch: batches in each epoch.
        seed: base seed, shared by every rank.
    """

    def make_batches(epoch: int, start_batch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        context = current_context()
        for index in range(start_batch, batches_per_epoch):
            batch = draw(np.random.default_rng([seed, epoch, index]))
            yield slice_for_rank(batch, context) if context.enabled else batch

    return make_batches


def slice_for_rank(batch: dict[str, torch.Tensor], context: DistributedContext) -> dict[str, torch.Tensor]:
    """This rank's contiguous rows of every tensor of a global batch (:func:`shared.distributed.rank_slice`)."""
    rows = rank_slice(batch_rows(batch), context)
    return {name: value[rows.start : rows.stop] for name, value in batch.items()}


def batch_rows(batch: dict[str, torch.Tensor]) -> int:
    """The leading dimension shared by every tensor of ``batch``.

    Raises:
        ValueError: the tensors disagree (the batch could not be sliced by row).
    """
    sizes = {name: int(value.shape[0]) for name, value in batch.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"batch tensors have different lengths: {sizes}")
    return next(iter(sizes.values()))
