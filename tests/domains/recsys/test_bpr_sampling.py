"""BPR batches: valid negatives, augmented share, determinism and exact resume."""

from __future__ import annotations

import numpy as np
import torch

from domains.recsys.llmrec.bpr_sampling import BprBatches


def _pairs() -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.unique(np.stack([rng.integers(0, 20, 150), rng.integers(0, 15, 150)], 1), axis=0)


def test_negatives_are_never_training_positives_and_every_pair_appears_once() -> None:
    pairs = _pairs()
    batches = BprBatches(pairs, 15, batch_size=16, seed=3)
    known = {tuple(p) for p in pairs.tolist()}
    seen = []
    for batch in batches(0):
        for user, pos, neg in zip(batch["users"].tolist(), batch["pos"].tolist(), batch["neg"].tolist()):
            assert (user, pos) in known and (user, neg) not in known
            seen.append((user, pos))
    assert sorted(seen) == sorted(known)
    assert len(list(batches(0))) == len(batches) == int(np.ceil(len(pairs) / 16))


def test_augmented_triplets_fill_their_share_of_each_batch() -> None:
    augmented = np.array([[0, 1, 2], [3, 4, 5]])
    batches = BprBatches(_pairs(), 15, batch_size=20, augmented_triplets=augmented, augmented_share=0.25, seed=0)
    batch = next(iter(batches(0)))
    assert int(batch["augmented"].sum()) == 5 and batch["users"].shape[0] == 25
    extra = torch.stack([batch["users"], batch["pos"], batch["neg"]], 1)[batch["augmented"]].tolist()
    assert all(triplet in augmented.tolist() for triplet in extra)


def test_batches_are_reproducible_and_resume_at_any_batch() -> None:
    batches = BprBatches(_pairs(), 15, batch_size=16, seed=5)
    full = list(batches(2))
    resumed = list(batches(2, start_batch=3))
    assert len(resumed) == len(full) - 3
    for a, b in zip(full[3:], resumed):
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert not torch.equal(next(iter(batches(3)))["users"], full[0]["users"]), "epochs differ"
