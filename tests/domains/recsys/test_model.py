"""The LLMRec model: LightGCN equivalence, BPR and pruning against independent computations, MAE training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import LightGCN

from domains.recsys.llmrec.graphs import bipartite_graph
from domains.recsys.llmrec.model import LLMRecModel, RecommenderConfig, attribute_vocabulary

N_USERS, N_ITEMS = 12, 9


def _pairs() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.unique(np.stack([rng.integers(0, N_USERS, 60), rng.integers(0, N_ITEMS, 60)], 1), axis=0)


def _plain(**overrides) -> RecommenderConfig:
    settings = dict(use_text_features=False, use_item_attributes=False, use_user_profiles=False, embedding_dim=8)
    settings.update(overrides)
    return RecommenderConfig(**settings)


def test_id_branch_equals_torch_geometric_lightgcn() -> None:
    pairs = _pairs()
    torch.manual_seed(0)
    model = LLMRecModel(N_USERS, N_ITEMS, pairs, _plain())
    reference = LightGCN(N_USERS + N_ITEMS, 8, 2)
    reference.embedding.weight.data.copy_(model.lightgcn.embedding.weight.data)
    expected = reference.get_embedding(bipartite_graph(pairs, N_USERS, N_ITEMS).edge_index)
    users, items = model.user_item_embeddings()
    torch.testing.assert_close(torch.cat([users, items]), expected, rtol=1e-5, atol=1e-6)


def _batch() -> dict[str, torch.Tensor]:
    return {
        "users": torch.tensor([0, 1, 2, 3, 4, 5]),
        "pos": torch.tensor([0, 1, 2, 3, 4, 5]),
        "neg": torch.tensor([8, 7, 6, 5, 4, 3]),
    }


def test_bpr_loss_and_pruning_keep_the_hardest_pairs() -> None:
    pairs = _pairs()
    torch.manual_seed(0)
    model = LLMRecModel(N_USERS, N_ITEMS, pairs, _plain(l2_weight=0.0, prune_drop_fraction=0.5)).train()
    batch = _batch()
    users, items = model.user_item_embeddings()
    u = users[batch["users"]]
    per_pair = -F.logsigmoid((u * items[batch["pos"]]).sum(1) - (u * items[batch["neg"]]).sum(1))
    hardest_half = per_pair.sort(descending=True).values[:3].mean()
    output = model(batch)
    assert output["loss"].item() == pytest.approx(hardest_half.item(), rel=1e-5)
    assert output["loss_terms"]["kept_fraction"].item() == pytest.approx(0.5)
    model.config.prune_drop_fraction = 0.0
    assert model(batch)["loss"].item() == pytest.approx(per_pair.mean().item(), rel=1e-5)


def test_paper_pruning_default_keeps_29_percent() -> None:
    model = LLMRecModel(N_USERS, N_ITEMS, _pairs(), _plain(prune_drop_fraction=0.71)).train()
    batch = {key: torch.arange(100) % (N_ITEMS if key != "users" else N_USERS) for key in ("users", "pos", "neg")}
    assert model(batch)["loss_terms"]["kept_fraction"].item() == pytest.approx(0.29)


def test_side_features_attributes_and_profiles_change_the_representations() -> None:
    pairs = _pairs()
    features = np.random.default_rng(1).normal(size=(N_ITEMS, 6)).astype(np.float32)
    attributes = [{"director": [f"d{i % 3}"]} if i < 6 else {} for i in range(N_ITEMS)]
    ids, vocabulary = attribute_vocabulary(attributes)
    assert vocabulary == ["director=d0", "director=d1", "director=d2"] and ids[6] == []
    profiles = np.random.default_rng(2).normal(size=(N_USERS, 5)).astype(np.float32)
    torch.manual_seed(0)
    plain = LLMRecModel(N_USERS, N_ITEMS, pairs, _plain())
    torch.manual_seed(0)
    rich = LLMRecModel(
        N_USERS,
        N_ITEMS,
        pairs,
        RecommenderConfig(embedding_dim=8, side_feature_weight=0.5, attribute_weight=0.5, profile_weight=0.5),
        item_text_features=features,
        item_attribute_ids=ids,
        n_attribute_values=len(vocabulary),
        user_profile_features=profiles,
    )
    rich.lightgcn.load_state_dict(plain.lightgcn.state_dict())
    plain_users, plain_items = plain.user_item_embeddings()
    rich_users, rich_items = rich.user_item_embeddings()
    side = F.normalize(rich.text_projection(torch.from_numpy(features)), dim=-1)
    attribute = F.normalize(rich.attribute_embedding(rich.attribute_flat, rich.attribute_offsets), dim=-1)
    attribute[6:] = 0
    expected_items = plain_items + 0.5 * side + 0.5 * attribute
    torch.testing.assert_close(rich_items, expected_items, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(rich_users, plain_users)


def test_mae_trains_its_decoder_and_lowers_reconstruction_error() -> None:
    pairs = _pairs()
    features = np.random.default_rng(3).normal(size=(N_ITEMS, 6)).astype(np.float32)
    config = RecommenderConfig(embedding_dim=8, mae_mask_rate=0.5, mae_loss_weight=1.0, use_item_attributes=False)
    torch.manual_seed(0)
    model = LLMRecModel(N_USERS, N_ITEMS, pairs, config, item_text_features=features).train()
    decoder_before = model.mae_decoder.weight.detach().clone()
    all_items = torch.ones(N_ITEMS, dtype=torch.bool)

    def reconstruction() -> float:
        with torch.no_grad():
            _, items = model.embeddings(mae_mask=all_items)
            return model.mae_loss(items, all_items).item()

    before = reconstruction()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        output = model(_batch())
        assert "mae" in output["loss_terms"]
        optimizer.zero_grad()
        output["loss"].backward()
        optimizer.step()
    assert not torch.equal(model.mae_decoder.weight, decoder_before)
    assert reconstruction() < 0.5 * before
