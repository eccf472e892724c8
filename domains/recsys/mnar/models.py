"""Matrix-factorisation models of the MNAR estimators: one model, and R independent replicas trained at once."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class PointwiseMF(nn.Module):
    """Matrix factorisation with a sigmoid link: ``ŷ_ui = σ(p_u·q_i + b_u + b_i + b)``.

    Args:
        n_users: number of users.
        n_items: number of items.
        dim: latent dimension.
        use_bias: add user, item and global biases (the semi-synthetic protocol does; Rel-MF real-data
            code does not).
        seed: seed of the Xavier-uniform initialisation.
    """

    def __init__(self, n_users: int, n_items: int, dim: int, use_bias: bool = True, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        bound_user = math.sqrt(6.0 / (n_users + dim))
        bound_item = math.sqrt(6.0 / (n_items + dim))
        self.user_factors = nn.Parameter((torch.rand(n_users, dim, generator=generator) * 2 - 1) * bound_user)
        self.item_factors = nn.Parameter((torch.rand(n_items, dim, generator=generator) * 2 - 1) * bound_item)
        self.use_bias = use_bias
        if use_bias:
            self.user_bias = nn.Parameter(torch.randn(n_users, generator=generator) * 0.01)
            self.item_bias = nn.Parameter(torch.randn(n_items, generator=generator) * 0.01)
            self.global_bias = nn.Parameter(torch.full((1,), 1e-3))

    @classmethod
    def from_factors(cls, user_factors: np.ndarray, item_factors: np.ndarray) -> PointwiseMF:
        """A bias-free model holding the given factors (fits solved outside autograd: ALS, ExpoMF), so the same
        evaluation code applies; its logits are the linear scores."""
        n_users, dim = user_factors.shape
        model = cls(n_users, item_factors.shape[0], dim, use_bias=False)
        with torch.no_grad():
            model.user_factors.copy_(torch.as_tensor(user_factors))
            model.item_factors.copy_(torch.as_tensor(item_factors))
        return model

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of the given pairs, shape ``(B,)``."""
        out = (self.user_factors[users] * self.item_factors[items]).sum(-1)
        if self.use_bias:
            out = out + self.user_bias[users] + self.item_bias[items] + self.global_bias
        return out

    @torch.no_grad()
    def score_matrix(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of every item for the given users (all users by default), shape ``(U, n_items)``."""
        user_factors = self.user_factors if users is None else self.user_factors[users]
        out = user_factors @ self.item_factors.T
        if self.use_bias:
            user_bias = self.user_bias if users is None else self.user_bias[users]
            out = out + user_bias[:, None] + self.item_bias[None, :] + self.global_bias
        return out

    def l2_penalty(self) -> torch.Tensor:
        """``½‖P‖² + ½‖Q‖²`` (+ biases), the regulariser of the released code."""
        penalty = 0.5 * (self.user_factors.square().sum() + self.item_factors.square().sum())
        if self.use_bias:
            penalty = penalty + 0.5 * (self.user_bias.square().sum() + self.item_bias.square().sum())
        return penalty


class ReplicatedPointwiseMF(nn.Module):
    """``R`` independent :class:`PointwiseMF` models held in stacked tensors and trained in one pass.

    Summing the replicas' losses gives every replica exactly the gradient it would get alone (no parameter
    is shared), so SGD or Adam on the stack equals ``R`` separate fits, at a fraction of the Python overhead.
    Replica ``r`` starts from the same initialisation as ``PointwiseMF(..., seed=seeds[r])``.

    Args:
        n_users: number of users.
        n_items: number of items.
        dim: latent dimension.
        seeds: one initialisation seed per replica.
        use_bias: user/item/global biases.
    """

    def __init__(self, n_users: int, n_items: int, dim: int, seeds: list[int], use_bias: bool = True) -> None:
        super().__init__()
        singles = [PointwiseMF(n_users, n_items, dim, use_bias=use_bias, seed=s) for s in seeds]
        self.n_users, self.n_items, self.dim, self.use_bias = n_users, n_items, dim, use_bias
        self.user_factors = nn.Parameter(torch.stack([m.user_factors.data for m in singles]))
        self.item_factors = nn.Parameter(torch.stack([m.item_factors.data for m in singles]))
        if use_bias:
            self.user_bias = nn.Parameter(torch.stack([m.user_bias.data for m in singles]))
            self.item_bias = nn.Parameter(torch.stack([m.item_bias.data for m in singles]))
            self.global_bias = nn.Parameter(torch.stack([m.global_bias.data for m in singles]))

    @property
    def n_replicas(self) -> int:
        """Number of replicas ``R``."""
        return self.user_factors.shape[0]

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of replica-specific pairs: ``users`` and ``items`` of shape ``(R, B)`` → ``(R, B)``."""
        replicas = torch.arange(self.n_replicas, device=users.device)[:, None]
        # index_select on flattened views: its backward (index_add) is far cheaper than advanced indexing's
        user_rows = (users + replicas * self.n_users).reshape(-1)
        item_rows = (items + replicas * self.n_items).reshape(-1)
        user_vectors = self.user_factors.view(-1, self.dim).index_select(0, user_rows)
        item_vectors = self.item_factors.view(-1, self.dim).index_select(0, item_rows)
        out = (user_vectors * item_vectors).sum(-1).view(users.shape)
        if self.use_bias:
            out = (
                out
                + self.user_bias.view(-1).index_select(0, user_rows).view(users.shape)
                + self.item_bias.view(-1).index_select(0, item_rows).view(users.shape)
                + self.global_bias
            )
        return out

    @torch.no_grad()
    def score_matrices(self) -> torch.Tensor:
        """Logits of every user–item pair for every replica, shape ``(R, n_users, n_items)``."""
        if not self.use_bias:
            return torch.bmm(self.user_factors, self.item_factors.transpose(1, 2))
        # one batched matmul over augmented factors [p_u, b_u + b, 1]·[q_i, 1, b_i] includes all biases
        ones_u = torch.ones_like(self.user_bias)[:, :, None]
        ones_i = torch.ones_like(self.item_bias)[:, :, None]
        users = torch.cat([self.user_factors, (self.user_bias + self.global_bias)[:, :, None], ones_u], dim=2)
        items = torch.cat([self.item_factors, ones_i, self.item_bias[:, :, None]], dim=2)
        return torch.bmm(users, items.transpose(1, 2))

    def l2_penalty(self) -> torch.Tensor:
        """Sum over replicas of :meth:`PointwiseMF.l2_penalty`."""
        penalty = 0.5 * (self.user_factors.square().sum() + self.item_factors.square().sum())
        if self.use_bias:
            penalty = penalty + 0.5 * (self.user_bias.square().sum() + self.item_bias.square().sum())
        return penalty

    @torch.no_grad()
    def copy_replicas_from(self, other: ReplicatedPointwiseMF, mask: torch.Tensor) -> None:
        """Overwrite the replicas selected by the boolean ``mask`` (shape ``(R,)``) with ``other``'s."""
        for name, param in self.named_parameters():
            param[mask] = other.get_parameter(name)[mask]

    def replica(self, index: int) -> PointwiseMF:
        """Replica ``index`` as a stand-alone :class:`PointwiseMF` (a copy)."""
        model = PointwiseMF(self.n_users, self.n_items, self.dim, use_bias=self.use_bias)
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(self.get_parameter(name)[index].cpu())
        return model
