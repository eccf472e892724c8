"""LLMRec-style recommender: torch-geometric LightGCN + projected side features, BPR with pruning, MAE.

Equations (LLMRec, WSDM'24, with LightGCN as the ID branch):

* ID branch: ``E = LightGCN(A)`` — mean over layers of symmetric-normalised propagation
  (``torch_geometric.nn.LightGCN``).
* Item side features: ``f_i`` (e.g. 384-d MiniLM text) → ``Linear`` → ``n(·)`` (L2 normalisation); the user
  side gets one user←item hop ``n(D_u^{-1} A f)``. Item KG/LLM attributes: ``n(mean of attribute embeddings)``.
  User profiles (LLM text, embedded): ``n(Linear(p_u))``.
* Fusion: ``h_u = e_u + w_side·n(f_u) + w_profile·n(p_u)``, ``h_i = e_i + w_side·n(f_i) + w_attr·n(a_i)``;
  score ``ŷ_ui = h_u·h_i``.
* BPR: ``ℓ = −log σ(ŷ_ui − ŷ_uj)`` per triplet. Pruning (LLMRec Eq. 7) keeps the ``1 − ω4`` fraction of
  triplets with the *largest* loss (ω4 = 0.71 in the paper → keep the hardest 29%).
* MAE feature enhancement (Eqs. 8–9): a fraction of items' raw features is replaced by a learnable mask token
  before projection; a decoder maps each masked item's fused representation ``h_i`` (graph signal + mask
  token) back to feature space and the scaled cosine error ``mean_{masked} (1 − cos(f̂_i, f_i))^γ`` is added
  to the loss, so the ID embeddings learn to carry the side information.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from domains.recsys.llmrec.graphs import bipartite_graph, import_torch_geometric


@dataclass
class RecommenderConfig:
    """Architecture and loss settings of :class:`LLMRecModel`."""

    embedding_dim: int = 64
    """Width of the ID embeddings and of every projected side feature."""
    num_layers: int = 2
    """LightGCN propagation layers."""
    use_text_features: bool = True
    """Project item text features and add them to item (and, via one hop, user) embeddings."""
    side_feature_weight: float = 0.02
    """Weight of the L2-normalised projected text feature (LLMRec: 0.02)."""
    use_item_attributes: bool = True
    """Embed item attributes (KG entities or LLM-completed values) and add them to item embeddings."""
    attribute_weight: float = 0.005
    """Weight of the L2-normalised attribute embedding (LLMRec: 0.005)."""
    use_user_profiles: bool = True
    """Add projected user profile features when the data has them."""
    profile_weight: float = 2.8
    """Weight of the L2-normalised profile projection (LLMRec: 2.8)."""
    prune_drop_fraction: float = 0.0
    """ω4: fraction of the easiest BPR triplets (smallest loss) dropped per batch; LLMRec's value is 0.71."""
    mae_mask_rate: float = 0.0
    """Fraction of items whose raw text features are masked for MAE feature enhancement (0 = off)."""
    mae_gamma: float = 2.0
    """Exponent γ of the scaled cosine reconstruction error."""
    mae_loss_weight: float = 0.0
    """Weight of the MAE reconstruction loss (0 = off)."""
    l2_weight: float = 1e-4
    """L2 penalty on the batch's layer-0 ID embeddings, divided by the batch size."""


def base_model_config(model: RecommenderConfig) -> RecommenderConfig:
    """Plain LightGCN (no side features, pruning or MAE) with the same width and depth as ``model``."""
    return replace(
        model,
        use_text_features=False,
        use_item_attributes=False,
        use_user_profiles=False,
        prune_drop_fraction=0.0,
        mae_mask_rate=0.0,
        mae_loss_weight=0.0,
    )


class LLMRecModel(nn.Module):
    """LightGCN recommender with LLMRec's side features, augmented BPR, pruning and MAE.

    Args:
        n_users: Number of users.
        n_items: Number of items.
        train_pairs: (E, 2) ``(user, item)`` training pairs; they define the propagation graph.
        config: Architecture and loss settings.
        item_text_features: Optional (n_items, F) raw item features.
        item_attribute_ids: Optional list (one per item) of attribute-vocabulary ids.
        n_attribute_values: Size of the attribute vocabulary.
        user_profile_features: Optional (n_users, P) raw profile features.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        train_pairs: np.ndarray,
        config: RecommenderConfig | None = None,
        item_text_features: np.ndarray | None = None,
        item_attribute_ids: list[list[int]] | None = None,
        n_attribute_values: int = 0,
        user_profile_features: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        import_torch_geometric()
        from torch_geometric.nn import LightGCN

        self.config = config = config or RecommenderConfig()
        self.n_users, self.n_items = n_users, n_items
        # The symmetric normalisation is fixed by the graph, so it is computed once and propagation runs as a
        # sparse CSR matmul (several times faster on CPU than re-normalising and scattering every step).
        self.lightgcn = LightGCN(n_users + n_items, config.embedding_dim, config.num_layers, normalize=False)
        graph = bipartite_graph(train_pairs, n_users, n_items)
        self.register_buffer("adjacency", normalized_adjacency(graph.edge_index, n_users + n_items), persistent=False)
        pairs = torch.as_tensor(np.asarray(train_pairs, dtype=np.int64)).reshape(-1, 2)
        degree = torch.bincount(pairs[:, 0], minlength=n_users).clamp_min(1).float()
        user_item = torch.sparse_coo_tensor(pairs.T, 1.0 / degree[pairs[:, 0]], (n_users, n_items)).coalesce()
        self.register_buffer("user_item_mean", user_item, persistent=False)

        self.text_projection: nn.Linear | None = None
        self.mae_decoder: nn.Linear | None = None
        if config.use_text_features and item_text_features is not None:
            features = torch.as_tensor(np.asarray(item_text_features, dtype=np.float32))
            self.register_buffer("item_text_features", features, persistent=False)
            self.text_projection = nn.Linear(features.shape[1], config.embedding_dim)
            if config.mae_mask_rate > 0 and config.mae_loss_weight > 0:
                self.mask_token = nn.Parameter(torch.zeros(features.shape[1]))
                self.mae_decoder = nn.Linear(config.embedding_dim, features.shape[1])
        self.attribute_embedding: nn.EmbeddingBag | None = None
        if config.use_item_attributes and item_attribute_ids is not None and n_attribute_values > 0:
            flat = [index for ids in item_attribute_ids for index in ids]
            offsets = np.cumsum([0] + [len(ids) for ids in item_attribute_ids[:-1]])
            self.register_buffer("attribute_flat", torch.as_tensor(flat, dtype=torch.long), persistent=False)
            self.register_buffer("attribute_offsets", torch.as_tensor(offsets, dtype=torch.long), persistent=False)
            self.register_buffer(
                "has_attributes",
                torch.as_tensor([len(ids) > 0 for ids in item_attribute_ids], dtype=torch.bool),
                persistent=False,
            )
            self.attribute_embedding = nn.EmbeddingBag(n_attribute_values, config.embedding_dim, mode="mean")
            nn.init.normal_(self.attribute_embedding.weight, std=0.1)
        self.profile_projection: nn.Linear | None = None
        if config.use_user_profiles and user_profile_features is not None:
            profiles = torch.as_tensor(np.asarray(user_profile_features, dtype=np.float32))
            self.register_buffer("user_profile_features", profiles, persistent=False)
            self.profile_projection = nn.Linear(profiles.shape[1], config.embedding_dim)

    def embeddings(self, mae_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item representations ``h_u``, ``h_i``.

        Args:
            mae_mask: Optional (n_items,) bool; masked items' raw text features are replaced by the mask token.

        Returns:
            (n_users, D) and (n_items, D).
        """
        with torch.autocast(self.adjacency.device.type, enabled=False):
            nodes = self.lightgcn.get_embedding(self.adjacency)
        users, items = nodes[: self.n_users], nodes[self.n_users :]
        if self.text_projection is not None:
            raw = self.item_text_features
            if mae_mask is not None:
                raw = torch.where(mae_mask.unsqueeze(1), self.mask_token.to(raw.dtype).expand_as(raw), raw)
            projected = self.text_projection(raw)
            item_side = F.normalize(projected, dim=-1)
            user_side = F.normalize(torch.sparse.mm(self.user_item_mean, projected.float()), dim=-1)
            weight = self.config.side_feature_weight
            users, items = users + weight * user_side, items + weight * item_side
        if self.attribute_embedding is not None:
            attributes = self.attribute_embedding(self.attribute_flat, self.attribute_offsets)
            attributes = F.normalize(attributes, dim=-1) * self.has_attributes.unsqueeze(1)
            items = items + self.config.attribute_weight * attributes
        if self.profile_projection is not None:
            profiles = F.normalize(self.profile_projection(self.user_profile_features), dim=-1)
            users = users + self.config.profile_weight * profiles
        return users, items

    def mae_loss(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scaled cosine error ``mean_{masked} (1 − cos(dec(h_i), f_i))^γ`` over the masked items.

        Args:
            items: (n_items, D) item representations computed with the masked features, so a masked item's
                representation carries only its graph (ID) signal and the mask token.
            mask: (n_items,) bool, the masked items.
        """
        if self.mae_decoder is None:
            raise RuntimeError("MAE is off: set mae_mask_rate and mae_loss_weight > 0 with text features")
        reconstructed = self.mae_decoder(items[mask])
        cosine = F.cosine_similarity(reconstructed, self.item_text_features[mask], dim=-1)
        return ((1.0 - cosine).clamp_min(0) ** self.config.mae_gamma).mean()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """BPR training step on ``batch["users"]``, ``batch["pos"]``, ``batch["neg"]`` (all (B,) long).

        Returns:
            ``{"loss": scalar, "loss_terms": {"bpr", "l2", "mae", "kept_fraction"}}``.
        """
        users_index, pos_index, neg_index = batch["users"], batch["pos"], batch["neg"]
        mask = None
        if self.mae_decoder is not None and self.training:
            mask = torch.rand(self.n_items, device=users_index.device) < self.config.mae_mask_rate
            if not mask.any():
                mask[torch.randint(self.n_items, (1,), device=mask.device)] = True
        users, items = self.embeddings(mae_mask=mask)
        u = users[users_index]
        difference = (u * items[pos_index]).sum(-1) - (u * items[neg_index]).sum(-1)
        # Per-triplet BPR (not LightGCN.recommendation_loss, which only returns the mean) so pruning can rank it.
        pair_loss = -F.logsigmoid(difference)
        kept = pair_loss
        if self.config.prune_drop_fraction > 0 and self.training:
            keep = max(1, math.ceil(round((1.0 - self.config.prune_drop_fraction) * pair_loss.numel(), 6)))
            kept = torch.topk(pair_loss, keep).values
        bpr = kept.mean()
        ego = self.lightgcn.embedding.weight
        l2 = (
            ego[users_index].pow(2).sum()
            + ego[self.n_users + pos_index].pow(2).sum()
            + ego[self.n_users + neg_index].pow(2).sum()
        ) / (2 * users_index.numel())
        loss = bpr + self.config.l2_weight * l2
        terms = {
            "bpr": bpr.detach(),
            "l2": l2.detach(),
            "kept_fraction": torch.tensor(kept.numel() / pair_loss.numel()),
        }
        if mask is not None:
            reconstruction = self.mae_loss(items, mask)
            loss = loss + self.config.mae_loss_weight * reconstruction
            terms["mae"] = reconstruction.detach()
        return {"loss": loss, "loss_terms": terms}

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation-mode ``(h_u, h_i)`` (no masking, no gradients)."""
        was_training = self.training
        self.eval()
        users, items = self.embeddings()
        self.train(was_training)
        return users, items


def normalized_adjacency(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """``D^{-1/2} A D^{-1/2}`` of an undirected graph as a sparse CSR tensor (LightGCN's propagation matrix)."""
    import_torch_geometric()
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    from torch_geometric.utils import to_torch_csr_tensor

    edge_index, weight = gcn_norm(edge_index, None, num_nodes, add_self_loops=False)
    with warnings.catch_warnings():
        # torch flags CSR support as beta and invariant checks as off; gcn_norm output is valid by construction.
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*", category=UserWarning)
        return to_torch_csr_tensor(edge_index, weight, size=(num_nodes, num_nodes))


def attribute_vocabulary(item_attributes: list[dict[str, list[str]]]) -> tuple[list[list[int]], list[str]]:
    """Maps ``name=value`` attribute strings to ids.

    Returns:
        Per item its attribute ids, and the vocabulary (id → ``name=value``).
    """
    vocabulary: dict[str, int] = {}
    per_item = []
    for attributes in item_attributes:
        ids = []
        for name in sorted(attributes):
            for value in attributes[name]:
                ids.append(vocabulary.setdefault(f"{name}={value}", len(vocabulary)))
        per_item.append(ids)
    return per_item, list(vocabulary)
