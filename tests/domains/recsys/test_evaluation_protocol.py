"""Which items a test ranking excludes: known train+val items (ours) or training items only (LLMRec's code)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from domains.recsys.llmrec.interactions import InteractionData
from domains.recsys.llmrec.training import FitConfig, check_fit_config, evaluate_split
from shared.user_errors import UserError


class FixedScores:
    """A stand-in recommender whose scores for one user are item 0 > 1 > 2 > 3 > 4."""

    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones(1, 1), torch.tensor([[5.0], [4.0], [3.0], [2.0], [1.0]])


def _data(held_out: np.ndarray | None = None) -> InteractionData:
    return InteractionData(
        user_ids=["u"],
        item_ids=[str(i) for i in range(5)],
        train=np.array([[0, 0]]),
        val=np.array([[0, 1]]),
        test=np.array([[0, 3]]),
        item_titles=[""] * 5,
        item_texts=[""] * 5,
        held_out_known=held_out,
    )


def test_training_items_only_keeps_validation_items_in_the_test_ranking() -> None:
    # ranking without train (0) and val (1): 2, 3, 4 → the test item 3 is second
    ours = evaluate_split(FixedScores(), _data(), "test", ks=(1, 2))
    assert (ours["recall@1"], ours["recall@2"]) == (0.0, 1.0)
    # without train only: 1, 2, 3 → the validation item takes a slot and the test item is third
    paper = evaluate_split(FixedScores(), _data(), "test", ks=(2, 3), test_excludes="train")
    assert (paper["recall@2"], paper["recall@3"]) == (0.0, 1.0)
    # held-out known pairs (an augmentation pool) are excluded in both protocols
    pooled = evaluate_split(FixedScores(), _data(np.array([[0, 2]])), "test", ks=(1,))
    assert pooled["recall@1"] == 1.0


def test_an_unknown_exclusion_is_refused_naming_the_flag() -> None:
    with pytest.raises(UserError, match="--fit.test_excludes"):
        check_fit_config(FitConfig(test_excludes="nothing"))
