"""The LLMRec model: LightGCN equivalence, BPR and pruning against independent computations, MAE training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import LightGCN

from domains.recsys.llmrec.graphs import bipartite_graph
from domains.recsys.llmrec.model import (
    BatchShare,
    LLMRecModel,
    RecommenderConfig,
    attribute_feature_matrices,
    row_normalized_graphs,
)

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


def test_small_loss_pruning_keeps_the_easiest_pairs() -> None:
    torch.manual_seed(0)
    config = _plain(l2_weight=0.0, prune_drop_fraction=0.5, prune_keep="easiest")
    model = LLMRecModel(N_USERS, N_ITEMS, _pairs(), config).train()
    users, items = model.user_item_embeddings()
    per_pair = model.pair_losses(users, items, _batch())
    assert model(_batch())["loss"].item() == pytest.approx(per_pair.sort().values[:3].mean().item(), rel=1e-5)


def test_paper_pruning_default_keeps_29_percent() -> None:
    model = LLMRecModel(N_USERS, N_ITEMS, _pairs(), _plain(prune_drop_fraction=0.71)).train()
    batch = {key: torch.arange(100) % (N_ITEMS if key != "users" else N_USERS) for key in ("users", "pos", "neg")}
    assert model(batch)["loss_terms"]["kept_fraction"].item() == pytest.approx(0.29)


# A hand-checked graph: users u0 → {i0, i1}, u1 → {i1, i2}. Degrees u: 2, 2; i: 1, 2, 1.
TINY_PAIRS = np.array([[0, 0], [0, 1], [1, 1], [1, 2]])
S = 1 / np.sqrt(2)
R_USER_ITEM = np.array([[S, S, 0], [0, S, S]])  # D_u^{-1/2} A
R_ITEM_USER = np.array([[1, 0], [S, S], [0, 1]])  # D_i^{-1/2} Aᵀ


def _identity(linear: torch.nn.Linear) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.weight.shape[0], linear.weight.shape[1]))
        linear.bias.zero_()


def _tiny_rich_model(**overrides) -> LLMRecModel:
    settings = dict(embedding_dim=2, side_feature_weight=0.5, attribute_weight=0.25, profile_weight=2.0)
    settings.update(overrides)
    text = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    profiles = np.array([[1, 0], [0, 2]], dtype=np.float32)
    attributes = [{"genre": ["a"]}, {"genre": ["a", "b"]}, {}]
    matrices = attribute_feature_matrices(attributes)
    torch.manual_seed(0)
    model = LLMRecModel(
        2,
        3,
        TINY_PAIRS,
        RecommenderConfig(**settings),
        item_text_features=text,
        item_attribute_features=matrices,
        user_profile_features=profiles,
    )
    for linear in (model.text_projection, model.attribute_projection, model.profile_projection):
        _identity(linear)
    return model


def test_row_normalised_graphs_match_the_hand_computed_matrices() -> None:
    user_items, item_users = row_normalized_graphs(TINY_PAIRS, 2, 3)
    np.testing.assert_allclose(user_items.to_dense().numpy(), R_USER_ITEM, rtol=1e-6)
    np.testing.assert_allclose(item_users.to_dense().numpy(), R_ITEM_USER, rtol=1e-6)
    matrices = attribute_feature_matrices([{"genre": ["a"]}, {"genre": ["a", "b"]}, {}])
    np.testing.assert_allclose(matrices["genre"].to_dense().numpy(), [[1, 0], [0.5, 0.5], [0, 0]])


def test_side_features_are_propagated_as_the_official_code_does() -> None:
    model = _tiny_rich_model()
    parts = model.representations()
    # text: users one hop R·f, items two hops Rᵀ'·R·f (by hand from the matrices above)
    text_users = [[S, S], [S, 2 * S]]
    text_items = [[S, S], [1.0, 1.5], [S, 2 * S]]
    # profiles: items one hop Rᵀ'·P, users two hops R·Rᵀ'·P
    profile_items = [[1, 0], [S, 2 * S], [0, 2]]
    profile_users = [[S * (1 + S), S * 2 * S], [S * (S + 0), S * (2 * S + 2)]]
    # attribute 'genre' (multi-hot mean rows [1,0], [.5,.5], [0,0]): users one hop, items two hops
    attribute_users = [[1.5 * S, 0.5 * S], [0.5 * S, 0.5 * S]]
    attribute_items = [[1.5 * S, 0.5 * S], [1.0, 0.5], [0.5 * S, 0.5 * S]]
    close = {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(parts.modal_users["text"].detach().numpy(), text_users, **close)
    np.testing.assert_allclose(parts.modal_items["text"].detach().numpy(), text_items, **close)
    np.testing.assert_allclose(parts.profile_items.detach().numpy(), profile_items, **close)
    np.testing.assert_allclose(parts.profile_users.detach().numpy(), profile_users, **close)
    np.testing.assert_allclose(parts.attribute_users["genre"].detach().numpy(), attribute_users, **close)
    np.testing.assert_allclose(parts.attribute_items["genre"].detach().numpy(), attribute_items, **close)

    def unit(rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    id_users, id_items = (part.detach().numpy() for part in model.id_embeddings())
    expected_users = id_users + 0.5 * unit(text_users) + 2.0 * unit(profile_users) + 0.25 * unit(attribute_users)
    expected_items = id_items + 0.5 * unit(text_items) + 2.0 * unit(profile_items) + 0.25 * unit(attribute_items)
    np.testing.assert_allclose(parts.users.detach().numpy(), expected_users, **close)
    np.testing.assert_allclose(parts.items.detach().numpy(), expected_items, **close)


def test_official_id_branch_row_normalises_and_softmaxes_the_last_layer() -> None:
    torch.manual_seed(0)
    model = LLMRecModel(2, 3, TINY_PAIRS, _plain(embedding_dim=4, id_propagation="llmrec"))
    weight = model.lightgcn.embedding.weight.detach().numpy().astype(np.float64)
    u0, i0 = weight[:2], weight[2:]

    def softmax(rows: np.ndarray) -> np.ndarray:
        exp = np.exp(rows - rows.max(1, keepdims=True))
        return exp / exp.sum(1, keepdims=True)

    u1 = R_USER_ITEM @ i0
    i1 = R_ITEM_USER @ u1
    u2 = softmax(R_USER_ITEM @ i1)
    i2 = softmax(R_ITEM_USER @ u2)
    users, items = model.user_item_embeddings()
    np.testing.assert_allclose(users.numpy(), (u0 + u1 + u2) / 3, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(items.numpy(), (i0 + i1 + i2) / 3, rtol=1e-5, atol=1e-6)


def _bpr(users: torch.Tensor, items: torch.Tensor, batch: dict, keep: int | None = None) -> torch.Tensor:
    u = users[batch["users"]]
    losses = -F.logsigmoid((u * items[batch["pos"]]).sum(1) - (u * items[batch["neg"]]).sum(1))
    return losses.sort(descending=True).values[: keep or len(losses)].mean()


@pytest.mark.parametrize("drop, keep", [(0.0, None), (0.5, 2)])
def test_auxiliary_bpr_terms_and_feature_regulariser_as_in_the_official_loss(drop: float, keep: int | None) -> None:
    weights = dict(feature_bpr_weight=0.3, profile_attribute_bpr_weight=0.7, feature_reg_weight=0.05, l2_weight=0.1)
    model = _tiny_rich_model(prune_drop_fraction=drop, **weights).train()
    batch = {"users": torch.tensor([0, 0, 1, 1]), "pos": torch.tensor([0, 1, 1, 2]), "neg": torch.tensor([2, 2, 0, 0])}
    parts = model.representations()
    main = _bpr(parts.users, parts.items, batch, keep)
    feature = _bpr(parts.modal_users["text"], parts.modal_items["text"], batch, keep)
    profile_attribute = _bpr(parts.profile_users, parts.attribute_items["genre"], batch, keep)
    regulariser = (0.5 * parts.modal_items["text"].pow(2).sum() + 0.5 * parts.modal_users["text"].pow(2).sum()) / 3
    ego = model.lightgcn.embedding.weight
    l2 = (
        ego[batch["users"]].pow(2).sum() + ego[2 + batch["pos"]].pow(2).sum() + ego[2 + batch["neg"]].pow(2).sum()
    ) / 8
    expected = main + 0.1 * l2 + 0.3 * feature + 0.7 * profile_attribute + 0.05 * regulariser
    output = model(batch)
    assert output["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    terms = output["loss_terms"]
    assert terms["feature_bpr"].item() == pytest.approx(feature.item(), rel=1e-5)
    assert terms["profile_attribute_bpr"].item() == pytest.approx(profile_attribute.item(), rel=1e-5)
    assert terms["feature_reg"].item() == pytest.approx(regulariser.item(), rel=1e-5)
    # every auxiliary term reaches its projection's gradient
    output["loss"].backward()
    assert model.profile_projection.weight.grad.abs().sum() > 0
    assert model.attribute_projection.weight.grad.abs().sum() > 0


def test_pruning_counts_which_dropped_pairs_were_injected_noise() -> None:
    pairs = _pairs()
    torch.manual_seed(0)
    model = LLMRecModel(N_USERS, N_ITEMS, pairs, _plain(prune_drop_fraction=0.5)).train()
    batch = {
        "users": torch.tensor([0, 1, 2, 3, 4, 5]),
        "pos": torch.tensor([0, 1, 2, 3, 4, 5]),
        "neg": torch.tensor([8, 7, 6, 5, 4, 3]),
        "augmented": torch.tensor([False, False, True, True, True, True]),
        "noisy": torch.tensor([False, False, False, True, False, True]),
    }
    users, items = model.user_item_embeddings()
    losses = model.pair_losses(users, items, batch)
    dropped = torch.ones(6, dtype=torch.bool)
    dropped[losses.topk(3).indices] = False
    model(batch)
    counts = model.pruning_counts.as_dict()
    assert counts["pairs"] == 6 and counts["dropped"] == 3
    assert counts["dropped_augmented"] == int((dropped & batch["augmented"]).sum())
    assert counts["dropped_noisy"] == int((dropped & batch["noisy"]).sum())
    assert counts["noise_share_of_augmented"] == pytest.approx(0.5)


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


class _SharedLosses(BatchShare):
    """A rank's share whose all-gather is replaced by the global batch's losses (no process group needed)."""

    def __init__(self, rows: list[int], rank: int, global_losses: torch.Tensor) -> None:
        super().__init__(len(rows), rows, rank)
        object.__setattr__(self, "global_losses", global_losses)

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        return self.global_losses.detach()


@pytest.mark.parametrize("drop", [0.0, 0.5, 0.71])
def test_rank_slices_of_a_pruned_batch_average_to_the_one_process_loss_and_gradient(drop: float) -> None:
    # DDP averages the ranks' gradients: the mean of the slice losses must be the global pruned mean, with the
    # pruning decided on the whole batch (an odd batch, so the slices differ in size).
    model = LLMRecModel(N_USERS, N_ITEMS, _pairs(), _plain(prune_drop_fraction=drop)).train()
    losses = torch.rand(7, generator=torch.Generator().manual_seed(3))
    whole_input = losses.clone().requires_grad_(True)
    whole, kept = model.pruned_mean(whole_input)
    whole.backward()
    sliced_input = losses.clone().requires_grad_(True)
    rows = [4, 3]
    parts, kept_parts = [], []
    for rank, (start, stop) in enumerate([(0, 4), (4, 7)]):
        value, kept_here = model.pruned_mean(sliced_input[start:stop], _SharedLosses(rows, rank, losses))
        parts.append(value)
        kept_parts.append(kept_here)
    averaged = sum(parts) / len(parts)
    averaged.backward()
    torch.testing.assert_close(averaged, whole)
    torch.testing.assert_close(sliced_input.grad, whole_input.grad)
    assert torch.equal(torch.cat(kept_parts), kept)
