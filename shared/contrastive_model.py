"""A contrastive model for any number of modalities: tower → projection → L2-normalized embedding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shared.contrastive_loss import ContrastiveLoss


def build_projection(kind: str, in_dim: int, out_dim: int, bias: bool = False) -> nn.Module:
    """Projection head from tower features to the shared embedding space.

    ``"linear"``: one linear map (CLIP: without bias; AstroM3's official code: with bias);
    ``"mlp"``: Linear → GELU → Linear with hidden width ``(in+out)//2`` (open_clip's HF ``mlp``
    projection); ``"none"``: identity (the tower already outputs ``out_dim``, e.g. open_clip towers with
    their own projection). ``bias`` adds a bias to every linear layer of the head.
    """
    if kind == "linear":
        return nn.Linear(in_dim, out_dim, bias=bias)
    if kind == "mlp":
        hidden = (in_dim + out_dim) // 2
        return nn.Sequential(nn.Linear(in_dim, hidden, bias=bias), nn.GELU(), nn.Linear(hidden, out_dim, bias=bias))
    if kind == "none":
        if in_dim != out_dim:
            raise ValueError(f"projection 'none' needs tower output {in_dim} == embed_dim {out_dim}")
        return nn.Identity()
    raise ValueError(f"projection must be 'linear', 'mlp' or 'none', got {kind!r}")


class ContrastiveModel(nn.Module):
    """Towers, projections and a :class:`ContrastiveLoss` over their normalized embeddings.

    A batch is a dict ``{modality: tower input, ...}``; other keys (ids, labels) are ignored.

    Args:
        towers: one tower per modality (each with ``output_dim``).
        embed_dim: width of the shared embedding space.
        pairs: modality pairs the loss contrasts (default: all pairs, in order).
        loss: a configured :class:`ContrastiveLoss` (default: CLIP loss over ``pairs``).
        projection: ``"linear"``, ``"mlp"``, ``"none"`` or a dict of those per modality.
        projection_bias: whether the projection heads' linear layers carry a bias.
    """

    def __init__(
        self,
        towers: Mapping[str, nn.Module],
        embed_dim: int,
        pairs: Sequence[tuple[str, str]] | None = None,
        loss: ContrastiveLoss | None = None,
        projection: str | Mapping[str, str] = "linear",
        projection_bias: bool = False,
    ) -> None:
        super().__init__()
        if len(towers) < 2:
            raise ValueError("a contrastive model needs at least two modalities")
        self.towers = nn.ModuleDict(dict(towers))
        self.embed_dim = embed_dim
        kinds = {name: projection for name in towers} if isinstance(projection, str) else dict(projection)
        self.projections = nn.ModuleDict(
            {
                name: build_projection(kinds[name], int(tower.output_dim), embed_dim, projection_bias)
                for name, tower in towers.items()
            }
        )
        names = list(towers)
        if pairs is None:
            pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        self.loss = loss if loss is not None else ContrastiveLoss(pairs)
        unknown = [m for m in self.loss.modalities if m not in self.towers]
        if unknown:
            raise ValueError(f"loss pairs name modalities without towers: {unknown}")

    @property
    def modalities(self) -> list[str]:
        """Modality names, in tower order."""
        return list(self.towers)

    def encode(self, modality: str, inputs: Any, normalize: bool = True) -> torch.Tensor:
        """Embed one modality's batch: tower → projection → (optionally) L2 normalization."""
        if modality not in self.towers:
            raise KeyError(f"unknown modality {modality!r}; model has {self.modalities}")
        features = self.projections[modality](self.towers[modality](inputs))
        return F.normalize(features, dim=-1) if normalize else features

    def compute_features(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Normalized embeddings of every modality the loss needs (the trainer's feature cache stores these)."""
        return {modality: self.encode(modality, batch[modality]) for modality in self.loss.modalities}

    def loss_from_features(self, features: Mapping[str, torch.Tensor], loss_params_grad: bool = True) -> dict[str, Any]:
        """Loss dict from (possibly cache-spliced) embeddings; see :meth:`ContrastiveLoss.forward`."""
        result = self.loss(dict(features), loss_params_grad=loss_params_grad)
        return {"loss": result["loss"], "loss_terms": result["terms"], "embeddings": dict(features)}

    def forward(self, batch: Mapping[str, Any], features_only: bool = False) -> dict[str, Any]:
        """``{"loss", "loss_terms", "embeddings"}`` for a batch; ``features_only`` returns the embeddings dict.

        ``features_only`` exists so that the trainer's accumulation passes run through ``forward``
        (DistributedDataParallel only tracks gradients of what ``forward`` computes).
        """
        features = self.compute_features(batch)
        if features_only:
            return features
        return self.loss_from_features(features)

    def after_optimizer_step(self) -> None:
        """Called by the trainer after every optimizer step: clamps the temperatures."""
        self.loss.clamp_logit_scales()
