"""LLMRec recommender as the official code builds it: ID branch, propagated side features, auxiliary BPR terms.

Read side by side with HKUDS/LLMRec ``Models.py`` (``MM_Model.forward``) and ``main.py`` (``Trainer.train``,
``bpr_loss``, ``prune_loss``, ``feat_reg_loss_calculation``). Notation: ``A`` the (users × items) training
matrix, ``R = D_u^{-1/2} A`` and ``Rᵀ' = D_i^{-1/2} Aᵀ`` the row-normalised user→item and item→user
matrices (the official ``csr_norm(·, mean_flag=True)``), ``n(·)`` L2 normalisation of rows.

* ID branch, two choices (``id_propagation``):
  ``symmetric`` — LightGCN as the paper's text describes it: mean over layers of ``D^{-1/2} Â D^{-1/2}``
  propagation (``torch_geometric.nn.LightGCN``); ``llmrec`` — the official code: alternately
  ``u_{l+1} = R i_l``, ``i_{l+1} = Rᵀ' u_{l+1}``, the last layer wrapped in a softmax, mean over layers.
* Item text (and image) features ``f``: ``t = W_m f``; users get one hop ``t_u = R t``, items two hops
  ``t_i = Rᵀ' R t``; fused with weight ``w_side`` (official 0.02).
* LLM item attributes, one feature matrix ``X_k`` per attribute name, all projected by one shared
  ``W_a``: ``a_u,k = R W_a X_k`` (users, one hop), ``a_i,k = Rᵀ' R W_a X_k`` (items, two hops); fused with
  ``w_attr`` (official 0.005) summed over the names.
* User profiles ``P``: ``p = W_p P``; items one hop ``p_i = Rᵀ' p``, users two hops ``p_u = R p_i``; fused
  with ``w_profile`` (official 2.8).
* ``h_u = e_u + w_side·Σ_m n(t_u,m) + w_profile·n(p_u) + w_attr·Σ_k n(a_u,k)`` and likewise ``h_i``;
  score ``ŷ_ui = h_u·h_i``.
* Loss (``main.py``): ``BPR(h) + λ‖e‖² + w_feat·Σ_m BPR(t_m) + w_aug·Σ_k BPR(p_u, a_i,k) + λ_f·L_reg``
  with ``L_reg = (½Σ t_i² + ½Σ t_u²) / n_items`` over every modality (official 1e-4, 0.012, 1e-5). Every BPR
  term is pruned (LLMRec Eq. 7, ``prune_loss``): only the ``1 − ω4`` fraction of pairs with the *largest*
  loss is kept (ω4 = 0.71 → the hardest 29%). The ID regulariser is plain L2 (the official
  ``1/(2Σx²)`` is an inverted regulariser, not copied).
* MAE feature enhancement (Eqs. 8–9): a fraction of items' raw text features is replaced by a learnable
  mask token; a decoder maps each masked item's fused ``h_i`` back to feature space and the scaled cosine
  error ``mean_{masked} (1 − cos(f̂_i, f_i))^γ`` is added.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from domains.recsys.llmrec.graphs import bipartite_graph, import_torch_geometric
from shared.distributed import current_context
from shared.user_errors import UserError

ID_PROPAGATIONS = ("symmetric", "llmrec")
PRUNE_KEEPS = ("hardest", "easiest")


@dataclass
class RecommenderConfig:
    """Architecture and loss settings of :class:`LLMRecModel`."""

    embedding_dim: int = 64
    """Width of the ID embeddings and of every projected side feature."""
    num_layers: int = 2
    """ID propagation layers."""
    id_propagation: str = "symmetric"
    """ID branch: 'symmetric' (LightGCN, D^-1/2 A D^-1/2, as the paper's text) or 'llmrec' (the official code:
    row-normalised D_row^-1/2 A, users and items propagated alternately, softmax on the last layer)."""
    use_text_features: bool = True
    """Project item text (and image) features and propagate them (users one hop, items two hops)."""
    side_feature_weight: float = 0.02
    """Weight of each L2-normalised propagated text/image feature (LLMRec model_cat_rate 0.02)."""
    use_item_attributes: bool = True
    """Project item attribute features (one shared projection) and propagate them to users and items."""
    attribute_weight: float = 0.005
    """Weight of each L2-normalised propagated attribute feature (LLMRec item_cat_rate 0.005)."""
    use_user_profiles: bool = True
    """Project user profile features and propagate them (items one hop, users two hops)."""
    profile_weight: float = 2.8
    """Weight of the L2-normalised propagated profile feature (LLMRec user_cat_rate 2.8)."""
    feature_bpr_weight: float = 1e-4
    """Weight of the auxiliary BPR over the propagated text/image features (LLMRec mm_mf_rate 1e-4)."""
    profile_attribute_bpr_weight: float = 0.012
    """Weight of the auxiliary BPR scoring users' profile features against items' attribute features
    (LLMRec aug_mf_rate 0.012; needs profiles and attributes)."""
    feature_reg_weight: float = 1e-5
    """Weight of the feature regulariser (½Σ squares of propagated text/image features) / n_items (LLMRec
    feat_reg_decay 1e-5)."""
    prune_drop_fraction: float = 0.0
    """ω4: fraction of the BPR pairs dropped from every BPR term (the easiest ones as LLMRec does; LLMRec's
    ω4 is 0.71)."""
    prune_keep: str = "hardest"
    """Which pairs pruning keeps: 'hardest' (LLMRec Eq. 7: the largest losses) or 'easiest' (the usual
    small-loss denoising heuristic: the largest losses are dropped as likely noise)."""
    mae_mask_rate: float = 0.0
    """Fraction of items whose raw text features are masked for MAE feature enhancement (0 = off)."""
    mae_gamma: float = 2.0
    """Exponent γ of the scaled cosine reconstruction error."""
    mae_loss_weight: float = 0.0
    """Weight of the MAE reconstruction loss (0 = off)."""
    l2_weight: float = 1e-4
    """L2 penalty on the batch's layer-0 ID embeddings, divided by the batch size."""


def base_model_config(model: RecommenderConfig) -> RecommenderConfig:
    """Plain ID branch (no side features, pruning or MAE) with the same width, depth and propagation as ``model``."""
    return replace(
        model,
        use_text_features=False,
        use_item_attributes=False,
        use_user_profiles=False,
        prune_drop_fraction=0.0,
        mae_mask_rate=0.0,
        mae_loss_weight=0.0,
    )


def check_recommender_config(config: RecommenderConfig, prefix: str = "--model.") -> None:
    """Refuses model settings that cannot work, naming the flag.

    Raises:
        UserError: an unknown ID propagation, a drop fraction outside [0, 1), or a mask rate outside [0, 1].
    """
    if config.id_propagation not in ID_PROPAGATIONS:
        raise UserError(f"{prefix}id_propagation: must be one of {ID_PROPAGATIONS}, got {config.id_propagation!r}")
    if config.prune_keep not in PRUNE_KEEPS:
        raise UserError(f"{prefix}prune_keep: must be one of {PRUNE_KEEPS}, got {config.prune_keep!r}")
    if not 0.0 <= config.prune_drop_fraction < 1.0:
        raise UserError(f"{prefix}prune_drop_fraction: must be in [0, 1), got {config.prune_drop_fraction}")
    if not 0.0 <= config.mae_mask_rate <= 1.0:
        raise UserError(f"{prefix}mae_mask_rate: must be in [0, 1], got {config.mae_mask_rate}")


@dataclass
class PruningCounts:
    """What pruning dropped from the main BPR term, summed over training steps.

    ``noisy`` pairs are augmented triplets a controlled experiment marked as injected noise.
    """

    pairs: int = 0
    dropped: int = 0
    augmented: int = 0
    dropped_augmented: int = 0
    noisy: int = 0
    dropped_noisy: int = 0

    def as_dict(self) -> dict[str, float | None]:
        """The counts plus the share of dropped pairs that were noise and of dropped augmented pairs."""
        return {
            **{name: float(value) for name, value in vars(self).items()},
            "noise_share_of_dropped": self.dropped_noisy / self.dropped if self.dropped else None,
            "noise_share_of_dropped_augmented": (
                self.dropped_noisy / self.dropped_augmented if self.dropped_augmented else None
            ),
            "noise_share_of_augmented": self.noisy / self.augmented if self.augmented else None,
            "dropped_share_of_noisy": self.dropped_noisy / self.noisy if self.noisy else None,
            "dropped_share_of_clean_augmented": (
                (self.dropped_augmented - self.dropped_noisy) / (self.augmented - self.noisy)
                if self.augmented > self.noisy
                else None
            ),
        }


@dataclass
class Representations:
    """One forward pass of the graph: fused representations and the propagated side parts.

    Attributes:
        users: (n_users, D) fused ``h_u``.
        items: (n_items, D) fused ``h_i``.
        modal_users: per modality (``text``, ``image``), users' one-hop feature ``t_u``.
        modal_items: per modality, items' two-hop feature ``t_i``.
        profile_users: users' two-hop profile feature ``p_u`` (or ``None``).
        profile_items: items' one-hop profile feature ``p_i`` (or ``None``).
        attribute_users: per attribute name, users' one-hop feature ``a_u,k``.
        attribute_items: per attribute name, items' two-hop feature ``a_i,k``.
    """

    users: torch.Tensor
    items: torch.Tensor
    modal_users: dict[str, torch.Tensor] = field(default_factory=dict)
    modal_items: dict[str, torch.Tensor] = field(default_factory=dict)
    profile_users: torch.Tensor | None = None
    profile_items: torch.Tensor | None = None
    attribute_users: dict[str, torch.Tensor] = field(default_factory=dict)
    attribute_items: dict[str, torch.Tensor] = field(default_factory=dict)


def _as_float_tensor(features: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        return features.coalesce().float() if features.is_sparse else features.float()
    return torch.as_tensor(np.asarray(features, dtype=np.float32))


@dataclass(frozen=True)
class BatchShare:
    """This rank's slice of a global BPR batch under torch.distributed (see :mod:`.bpr_sampling`).

    Each rank's loss is ``world_size / global_count · Σ_{its slice} ℓ`` so that the mean of the ranks' losses
    (and DDP's average of their gradients) is the one-process mean over the global batch.
    """

    world_size: int
    rows: list[int]
    """Rows of every rank's slice, in rank order (the slices are contiguous, in global batch order)."""
    rank: int

    @classmethod
    def of_local_rows(cls, local_rows: int, device: torch.device) -> BatchShare | None:
        """The share of this rank (None for one process): the slice sizes are all-gathered."""
        context = current_context()
        if not context.enabled:
            return None
        sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(context.world_size)]
        dist.all_gather(sizes, torch.tensor([local_rows], dtype=torch.int64, device=device))
        return cls(context.world_size, [int(size) for size in sizes], context.rank)

    @property
    def offset(self) -> int:
        """Where this rank's slice starts in the global batch."""
        return sum(self.rows[: self.rank])

    @property
    def global_rows(self) -> int:
        """Rows of the global batch."""
        return sum(self.rows)

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """Every rank's 1-D ``values`` (no gradient) concatenated in rank order: the global batch's values."""
        longest = max(self.rows)
        padded = values.new_zeros(longest)
        padded[: values.numel()] = values
        parts = [torch.zeros_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[:rows] for part, rows in zip(parts, self.rows, strict=True)])


def _project(linear: nn.Linear, features: torch.Tensor) -> torch.Tensor:
    """``linear(features)`` for a dense or a sparse COO feature matrix (sparse: multi-hot attribute rows)."""
    if features.is_sparse:
        return torch.sparse.mm(features, linear.weight.t()) + linear.bias
    return linear(features)


class LLMRecModel(nn.Module):
    """LLMRec's recommender: ID branch, propagated side features, augmented and auxiliary BPR, pruning, MAE.

    Args:
        n_users: Number of users.
        n_items: Number of items.
        train_pairs: (E, 2) ``(user, item)`` training pairs; they define every propagation matrix.
        config: Architecture and loss settings.
        item_text_features: Optional (n_items, F) raw item text features.
        item_attribute_features: Optional attribute name → (n_items, V) features (dense, or sparse COO such as
            the multi-hot rows of :func:`attribute_feature_matrices`); all share one projection, so all have
            the same width ``V``.
        user_profile_features: Optional (n_users, P) raw profile features.
        item_image_features: Optional (n_items, G) raw item image features.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        train_pairs: np.ndarray,
        config: RecommenderConfig | None = None,
        item_text_features: np.ndarray | None = None,
        item_attribute_features: dict[str, np.ndarray | torch.Tensor] | None = None,
        user_profile_features: np.ndarray | None = None,
        item_image_features: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        import_torch_geometric()
        from torch_geometric.nn import LightGCN

        self.config = config = config or RecommenderConfig()
        check_recommender_config(config)
        self.n_users, self.n_items = n_users, n_items
        # One table of n_users + n_items ID embeddings (xavier-uniform, as both LightGCN and LLMRec initialise).
        # The symmetric normalisation is fixed by the graph, so it is computed once and propagation runs as a
        # sparse CSR matmul (several times faster on CPU than re-normalising and scattering every step).
        self.lightgcn = LightGCN(n_users + n_items, config.embedding_dim, config.num_layers, normalize=False)
        graph = bipartite_graph(train_pairs, n_users, n_items)
        self.register_buffer("adjacency", normalized_adjacency(graph.edge_index, n_users + n_items), persistent=False)
        user_items, item_users = row_normalized_graphs(train_pairs, n_users, n_items)
        self.register_buffer("user_item_graph", user_items, persistent=False)
        self.register_buffer("item_user_graph", item_users, persistent=False)
        self.pruning_counts = PruningCounts()

        self.modal_projections = nn.ModuleDict()
        self.mae_decoder: nn.Linear | None = None
        if config.use_text_features:
            for name, raw in (("text", item_text_features), ("image", item_image_features)):
                if raw is None:
                    continue
                features = _as_float_tensor(raw)
                self.register_buffer(f"item_{name}_features", features, persistent=False)
                self.modal_projections[name] = nn.Linear(features.shape[1], config.embedding_dim)
            if "text" in self.modal_projections and config.mae_mask_rate > 0 and config.mae_loss_weight > 0:
                width = self.item_text_features.shape[1]
                self.mask_token = nn.Parameter(torch.zeros(width))
                self.mae_decoder = nn.Linear(config.embedding_dim, width)
        self.text_projection = self.modal_projections["text"] if "text" in self.modal_projections else None

        self.attribute_names: list[str] = []
        self.attribute_projection: nn.Linear | None = None
        if config.use_item_attributes and item_attribute_features:
            widths = set()
            for position, (name, raw) in enumerate(sorted(item_attribute_features.items())):
                features = _as_float_tensor(raw)
                widths.add(features.shape[1])
                self.register_buffer(f"attribute_features_{position}", features, persistent=False)
                self.attribute_names.append(name)
            if len(widths) != 1:
                raise ValueError(f"attribute features share one projection, so need one width; got {sorted(widths)}")
            self.attribute_projection = nn.Linear(widths.pop(), config.embedding_dim)
        self.profile_projection: nn.Linear | None = None
        if config.use_user_profiles and user_profile_features is not None:
            profiles = _as_float_tensor(user_profile_features)
            self.register_buffer("user_profile_features", profiles, persistent=False)
            self.profile_projection = nn.Linear(profiles.shape[1], config.embedding_dim)
        for projection in [*self.modal_projections.values(), self.attribute_projection, self.profile_projection]:
            if projection is not None:
                nn.init.xavier_uniform_(projection.weight)  # as LLMRec initialises its *_trans layers

    # ----------------------------------------------------------------------------------------- propagation
    def _to_users(self, item_rows: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(self.user_item_graph, item_rows.float())

    def _to_items(self, user_rows: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(self.item_user_graph, user_rows.float())

    def id_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ID branch's user and item embeddings (before side features), per ``config.id_propagation``."""
        with torch.autocast(self.adjacency.device.type, enabled=False):
            if self.config.id_propagation == "symmetric":
                nodes = self.lightgcn.get_embedding(self.adjacency)
                return nodes[: self.n_users], nodes[self.n_users :]
            weight = self.lightgcn.embedding.weight
            users, items = weight[: self.n_users], weight[self.n_users :]
            user_layers, item_layers = [users], [items]
            for layer in range(self.config.num_layers):
                users = self._to_users(items)
                if layer == self.config.num_layers - 1:
                    users = torch.softmax(users, dim=-1)
                items = self._to_items(users)
                if layer == self.config.num_layers - 1:
                    items = torch.softmax(items, dim=-1)
                user_layers.append(users)
                item_layers.append(items)
            return torch.stack(user_layers).mean(0), torch.stack(item_layers).mean(0)

    def representations(self, mae_mask: torch.Tensor | None = None) -> Representations:
        """Fused representations and the propagated side parts (see the module docstring for the equations).

        Args:
            mae_mask: Optional (n_items,) bool; masked items' raw text features are replaced by the mask token.
        """
        users, items = self.id_embeddings()
        parts = Representations(users=users, items=items)
        config = self.config
        for name, projection in self.modal_projections.items():
            raw = getattr(self, f"item_{name}_features")
            if name == "text" and mae_mask is not None:
                raw = torch.where(mae_mask.unsqueeze(1), self.mask_token.to(raw.dtype).expand_as(raw), raw)
            projected = projection(raw)
            parts.modal_users[name] = self._to_users(projected)
            parts.modal_items[name] = self._to_items(parts.modal_users[name])
            users = users + config.side_feature_weight * F.normalize(parts.modal_users[name], dim=-1)
            items = items + config.side_feature_weight * F.normalize(parts.modal_items[name], dim=-1)
        if self.profile_projection is not None:
            projected = self.profile_projection(self.user_profile_features)
            parts.profile_items = self._to_items(projected)
            parts.profile_users = self._to_users(parts.profile_items)
            users = users + config.profile_weight * F.normalize(parts.profile_users, dim=-1)
            items = items + config.profile_weight * F.normalize(parts.profile_items, dim=-1)
        if self.attribute_projection is not None:
            for position, name in enumerate(self.attribute_names):
                projected = _project(self.attribute_projection, getattr(self, f"attribute_features_{position}"))
                parts.attribute_users[name] = self._to_users(projected)
                parts.attribute_items[name] = self._to_items(parts.attribute_users[name])
                users = users + config.attribute_weight * F.normalize(parts.attribute_users[name], dim=-1)
                items = items + config.attribute_weight * F.normalize(parts.attribute_items[name], dim=-1)
        parts.users, parts.items = users, items
        return parts

    def embeddings(self, mae_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item representations ``h_u``, ``h_i``: (n_users, D) and (n_items, D)."""
        parts = self.representations(mae_mask)
        return parts.users, parts.items

    # ----------------------------------------------------------------------------------------------- losses
    def pair_losses(self, users: torch.Tensor, items: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-pair BPR loss ``−log σ(u·i⁺ − u·i⁻)`` of the batch's triplets over the given representations."""
        u = users[batch["users"]]
        return -F.logsigmoid((u * items[batch["pos"]]).sum(-1) - (u * items[batch["neg"]]).sum(-1))

    def _prunes(self) -> bool:
        return self.config.prune_drop_fraction > 0 and self.training

    def _kept_mask(self, pair_loss: torch.Tensor) -> torch.Tensor:
        """Which pairs pruning keeps: the ``1 − ω4`` fraction with the largest (or smallest) loss; all if off."""
        kept = torch.ones_like(pair_loss, dtype=torch.bool)
        if self._prunes() and pair_loss.numel():
            keep = max(1, math.ceil(round((1.0 - self.config.prune_drop_fraction) * pair_loss.numel(), 6)))
            kept = torch.zeros_like(kept)
            largest = self.config.prune_keep == "hardest"
            kept[torch.topk(pair_loss.detach(), keep, largest=largest).indices] = True
        return kept

    def pruned_mean(
        self, pair_loss: torch.Tensor, share: BatchShare | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """LLMRec's ``prune_loss``: the mean over the kept pairs and the kept mask.

        While training with ``prune_drop_fraction`` ω4 > 0, keeps the ``1 − ω4`` fraction of pairs with the
        largest loss (``prune_keep='easiest'``: the smallest); otherwise keeps all.

        With a ``share`` (this rank's slice of a global batch), the kept pairs are chosen on the global batch
        (the ranks' detached losses are all-gathered) and the slice's kept losses are summed with weight
        ``world_size / kept globally``: the ranks' mean is the one-process pruned mean.
        """
        if share is None:
            kept = self._kept_mask(pair_loss)
            return pair_loss[kept].mean(), kept
        if self._prunes():
            kept_globally = self._kept_mask(share.gather(pair_loss.detach()))
            kept = kept_globally[share.offset : share.offset + pair_loss.numel()]
            kept_count = int(kept_globally.sum())
        else:
            kept, kept_count = torch.ones_like(pair_loss, dtype=torch.bool), share.global_rows
        return pair_loss[kept].sum() * (share.world_size / max(kept_count, 1)), kept

    def _count_pruning(self, batch: dict[str, torch.Tensor], kept: torch.Tensor) -> None:
        dropped = ~kept
        augmented = batch.get("augmented")
        noisy = batch.get("noisy")
        counts = self.pruning_counts
        counts.pairs += int(kept.numel())
        counts.dropped += int(dropped.sum())
        if augmented is not None:
            augmented = augmented.to(kept.device)
            counts.augmented += int(augmented.sum())
            counts.dropped_augmented += int((dropped & augmented).sum())
        if noisy is not None:
            noisy = noisy.to(kept.device)
            counts.noisy += int(noisy.sum())
            counts.dropped_noisy += int((dropped & noisy).sum())

    def feature_regularizer(self, parts: Representations) -> torch.Tensor:
        """``(½Σ t_i² + ½Σ t_u²) / n_items`` summed over modalities (LLMRec ``feat_reg_loss_calculation``)."""
        total = parts.users.new_zeros(())
        for name in parts.modal_items:
            total = total + 0.5 * parts.modal_items[name].pow(2).sum() + 0.5 * parts.modal_users[name].pow(2).sum()
        return total / self.n_items

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

        Optional ``batch["augmented"]`` / ``batch["noisy"]`` (B,) bool mark augmented triplets and injected
        noise; pruning's drops among them are counted in :attr:`pruning_counts` while training.

        Returns:
            ``{"loss": scalar, "loss_terms": {"bpr", "l2", "kept_fraction", and when active "feature_bpr",
            "profile_attribute_bpr", "feature_reg", "mae"}}``.
        """
        users_index, pos_index, neg_index = batch["users"], batch["pos"], batch["neg"]
        config = self.config
        # Under torch.distributed the batch is this rank's slice of the global batch: per-pair terms are weighted
        # so that the ranks' mean is the global batch's (BatchShare); whole-graph terms (feature_reg, MAE) are
        # the same on every rank, so their mean is unchanged.
        share = BatchShare.of_local_rows(users_index.numel(), users_index.device) if self.training else None
        mask = None
        if self.mae_decoder is not None and self.training:
            mask = torch.rand(self.n_items, device=users_index.device) < config.mae_mask_rate
            if not mask.any():
                mask[torch.randint(self.n_items, (1,), device=mask.device)] = True
            if share is not None:  # rank 0's draw (its RNG is the one-process one), the same on every rank
                flags = mask.to(torch.uint8)
                dist.broadcast(flags, src=0)
                mask = flags.bool()
        parts = self.representations(mae_mask=mask)
        bpr, kept = self.pruned_mean(self.pair_losses(parts.users, parts.items, batch), share)
        if self.training:
            self._count_pruning(batch, kept)
        ego = self.lightgcn.embedding.weight
        l2_sum = (
            ego[users_index].pow(2).sum()
            + ego[self.n_users + pos_index].pow(2).sum()
            + ego[self.n_users + neg_index].pow(2).sum()
        )
        if share is None:
            l2 = l2_sum / (2 * users_index.numel())
        else:
            l2 = l2_sum * (share.world_size / (2 * max(share.global_rows, 1)))
        loss = bpr + config.l2_weight * l2
        terms = {"bpr": bpr.detach(), "l2": l2.detach(), "kept_fraction": kept.float().mean().detach()}
        if parts.modal_items:
            feature_bpr = sum(
                self.pruned_mean(self.pair_losses(parts.modal_users[name], parts.modal_items[name], batch), share)[0]
                for name in parts.modal_items
            )
            feature_reg = self.feature_regularizer(parts)
            loss = loss + config.feature_bpr_weight * feature_bpr + config.feature_reg_weight * feature_reg
            terms["feature_bpr"], terms["feature_reg"] = feature_bpr.detach(), feature_reg.detach()
        if parts.profile_users is not None and parts.attribute_items:
            profile_attribute_bpr = sum(
                self.pruned_mean(self.pair_losses(parts.profile_users, parts.attribute_items[name], batch), share)[0]
                for name in parts.attribute_items
            )
            loss = loss + config.profile_attribute_bpr_weight * profile_attribute_bpr
            terms["profile_attribute_bpr"] = profile_attribute_bpr.detach()
        if mask is not None:
            reconstruction = self.mae_loss(parts.items, mask)
            loss = loss + config.mae_loss_weight * reconstruction
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


def row_normalized_graphs(train_pairs: np.ndarray, n_users: int, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LLMRec's propagation matrices ``D_u^{-1/2} A`` (users × items) and ``D_i^{-1/2} Aᵀ`` (items × users).

    Each row is scaled by the inverse square root of its own degree only (the official
    ``csr_norm(·, mean_flag=True)``); repeated pairs count once. Sparse CSR float32.
    """
    pairs = np.unique(np.asarray(train_pairs, dtype=np.int64).reshape(-1, 2), axis=0)
    users, items = torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])
    user_degree = torch.bincount(users, minlength=n_users).float()
    item_degree = torch.bincount(items, minlength=n_items).float()

    def matrix(rows: torch.Tensor, columns: torch.Tensor, degree: torch.Tensor, shape: tuple[int, int]):
        values = degree[rows].clamp_min(1.0).rsqrt()
        coo = torch.sparse_coo_tensor(torch.stack([rows, columns]), values, shape, check_invariants=True).coalesce()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse.*", category=UserWarning)
            return coo.to_sparse_csr()

    return (
        matrix(users, items, user_degree, (n_users, n_items)),
        matrix(items, users, item_degree, (n_items, n_users)),
    )


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


def attribute_feature_matrices(item_attributes: list[dict[str, list[str]]]) -> dict[str, torch.Tensor]:
    """One sparse (n_items, V) feature matrix per attribute name, over one shared ``name=value`` vocabulary.

    A row is the mean of the one-hot vectors of the item's values for that name (all zero when it has none),
    so the shared projection of :class:`LLMRecModel` turns it into the mean of learned value embeddings:
    the offline counterpart of LLMRec's embedded attribute text. Names are sorted; V = vocabulary size.
    """
    _, vocabulary = attribute_vocabulary(item_attributes)
    lookup = {entry: index for index, entry in enumerate(vocabulary)}
    names = sorted({name for attributes in item_attributes for name, values in attributes.items() if values})
    matrices = {}
    for name in names:
        rows, columns, values = [], [], []
        for item, attributes in enumerate(item_attributes):
            chosen = attributes.get(name, [])
            for value in chosen:
                rows.append(item)
                columns.append(lookup[f"{name}={value}"])
                values.append(1.0 / len(chosen))
        matrices[name] = torch.sparse_coo_tensor(
            torch.as_tensor([rows, columns], dtype=torch.long).reshape(2, -1),
            torch.as_tensor(values, dtype=torch.float32),
            (len(item_attributes), len(vocabulary)),
            check_invariants=True,
        ).coalesce()
    return matrices
