"""BPR triplet batches: observed (user, positive) pairs, uniform negatives, and augmented triplets.

Each batch holds ``batch_size`` training pairs in a seeded per-epoch order, each with one negative drawn
uniformly from the items the user has not interacted with in training, plus ``round(augmented_share ·
batch_size)`` augmented ``(user, pos, neg)`` triplets (e.g. LLM- or KG-derived) drawn with replacement. The
batches of epoch ``e`` depend only on ``(seed, e)``, so training resumes exactly from any batch.

Under torch.distributed every rank draws the same global batch from the shared seed and keeps its contiguous
slice (:func:`shared.distributed.rank_slice`); :class:`~domains.recsys.llmrec.model.LLMRecModel` weights each
slice's loss so that DDP's gradient average equals the one-process gradient (pruning decided on the global
batch).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from shared.distributed import current_context, rank_slice


class BprBatches:
    """Seeded BPR batches for ``Trainer.fit(make_batches)``.

    Args:
        train_pairs: (E, 2) ``(user, item)`` training pairs.
        n_items: Number of items.
        batch_size: Observed pairs per batch.
        augmented_triplets: Optional (A, 3) ``(user, pos, neg)`` triplets.
        augmented_share: Augmented triplets per batch as a fraction of ``batch_size``.
        seed: Base seed.
        augmented_is_noise: Optional (A,) bool marking augmented triplets that a controlled experiment injected
            as noise; batches then carry a ``noisy`` flag per pair (the model counts what pruning drops).
    """

    def __init__(
        self,
        train_pairs: np.ndarray,
        n_items: int,
        batch_size: int = 1024,
        augmented_triplets: np.ndarray | None = None,
        augmented_share: float = 0.0,
        seed: int = 0,
        augmented_is_noise: np.ndarray | None = None,
    ) -> None:
        self.pairs = np.asarray(train_pairs, dtype=np.int64).reshape(-1, 2)
        self.n_items = n_items
        self.batch_size = batch_size
        self.augmented = (
            np.asarray(augmented_triplets, dtype=np.int64).reshape(-1, 3)
            if augmented_triplets is not None
            else np.zeros((0, 3), dtype=np.int64)
        )
        self.augmented_per_batch = round(augmented_share * batch_size) if len(self.augmented) else 0
        self.seed = seed
        self.augmented_is_noise = (
            np.asarray(augmented_is_noise, dtype=bool).reshape(-1) if augmented_is_noise is not None else None
        )
        if self.augmented_is_noise is not None and len(self.augmented_is_noise) != len(self.augmented):
            raise ValueError(
                f"augmented_is_noise has {len(self.augmented_is_noise)} flags for {len(self.augmented)} triplets"
            )
        self._known = np.unique(self.pairs[:, 0] * n_items + self.pairs[:, 1])

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(len(self.pairs) / self.batch_size)

    def _negatives(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        negatives = rng.integers(0, self.n_items, size=len(users))
        for _ in range(100):
            clash = self._is_known(users, negatives)
            if not clash.any():
                break
            negatives[clash] = rng.integers(0, self.n_items, size=int(clash.sum()))
        return negatives

    def _is_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        position = np.minimum(np.searchsorted(self._known, keys), len(self._known) - 1)
        return self._known[position] == keys

    def __call__(self, epoch: int, start_batch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of ``epoch`` from ``start_batch`` on: ``{"users", "pos", "neg", "augmented"}`` tensors (plus
        ``noisy`` when noise flags were given); this rank's slice of each global batch under torch.distributed."""
        context = current_context()
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.pairs))
        for batch_number in range(start_batch, len(self)):
            rng = np.random.default_rng([self.seed, epoch, batch_number, 1])
            chosen = self.pairs[order[batch_number * self.batch_size : (batch_number + 1) * self.batch_size]]
            users, positives = chosen[:, 0], chosen[:, 1]
            negatives = self._negatives(users, rng)
            augmented = np.zeros(len(users), dtype=bool)
            noisy = np.zeros(len(users), dtype=bool)
            if self.augmented_per_batch:
                drawn = rng.integers(0, len(self.augmented), size=self.augmented_per_batch)
                extra = self.augmented[drawn]
                users = np.concatenate([users, extra[:, 0]])
                positives = np.concatenate([positives, extra[:, 1]])
                negatives = np.concatenate([negatives, extra[:, 2]])
                augmented = np.concatenate([augmented, np.ones(len(extra), dtype=bool)])
                if self.augmented_is_noise is not None:
                    noisy = np.concatenate([noisy, self.augmented_is_noise[drawn]])
            batch = {
                "users": torch.from_numpy(users),
                "pos": torch.from_numpy(positives),
                "neg": torch.from_numpy(negatives),
                "augmented": torch.from_numpy(augmented),
            }
            if self.augmented_is_noise is not None:
                batch["noisy"] = torch.from_numpy(noisy)
            if context.enabled:
                rows = rank_slice(len(users), context)
                batch = {name: value[rows.start : rows.stop] for name, value in batch.items()}
            yield batch
