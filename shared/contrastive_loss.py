"""Contrastive loss over any list of modality pairs: CLIP (softmax) or SigLIP (sigmoid), distributed-aware.

For one pair it equals open_clip's ``ClipLoss`` / ``SigLipLoss`` (tested against open_clip itself).
Each pair has its own learnable temperature (stored as a log scale, clamped after each optimizer step)
and weight; SigLIP pairs also learn a bias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from shared.distributed import current_context, gather_features


def pair_name(pair: tuple[str, str]) -> str:
    """The key of a modality pair in loss terms and parameter names, e.g. ``"image-text"``."""
    return f"{pair[0]}-{pair[1]}"


class ContrastiveLoss(nn.Module):
    """Weighted sum of pairwise contrastive losses.

    Args:
        pairs: modality pairs, e.g. ``[("image", "text")]`` or the three astro pairs.
        kind: ``"clip"`` (symmetric InfoNCE, mean of both directions) or ``"siglip"`` (pairwise sigmoid).
        logit_scale_init: initial temperature inverse (CLIP 1/0.07; SigLIP 10).
        logit_scale_min: lower clamp of the scale (applied to its log after each step).
        logit_scale_max: upper clamp of the scale (open_clip: 100).
        logit_bias_init: SigLIP's initial bias (−10); ignored for CLIP.
        pair_weights: one weight per pair (default 1 each); the loss is the weighted sum.
        local_loss: compute logits of local rows against all gathered columns (memory linear in batch).
        gather_with_grad: all-gather features differentiably (the setting that scales).
        learn_logit_scale: learn the temperatures (False: fixed at init).
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        kind: str = "clip",
        logit_scale_init: float | None = None,
        logit_scale_min: float = 1.0,
        logit_scale_max: float = 100.0,
        logit_bias_init: float = -10.0,
        pair_weights: Sequence[float] | None = None,
        local_loss: bool = True,
        gather_with_grad: bool = True,
        learn_logit_scale: bool = True,
    ) -> None:
        super().__init__()
        if kind not in ("clip", "siglip"):
            raise ValueError(f"kind must be 'clip' or 'siglip', got {kind!r}")
        if not pairs:
            raise ValueError("at least one modality pair is needed")
        self.pairs = [tuple(pair) for pair in pairs]
        for first, second in self.pairs:
            if first == second:
                raise ValueError(f"a pair needs two different modalities, got ({first!r}, {second!r})")
        weights = list(pair_weights) if pair_weights is not None else [1.0] * len(self.pairs)
        if len(weights) != len(self.pairs):
            raise ValueError(f"{len(weights)} pair weights given for {len(self.pairs)} pairs")
        self.kind = kind
        self.pair_weights = weights
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        if logit_scale_init is None:
            logit_scale_init = 1 / 0.07 if kind == "clip" else 10.0
        if not logit_scale_min <= logit_scale_init <= logit_scale_max:
            raise ValueError(
                f"logit_scale_init {logit_scale_init} outside the clamp range [{logit_scale_min}, {logit_scale_max}]"
            )
        self.log_min = math.log(logit_scale_min)
        self.log_max = math.log(logit_scale_max)
        self.logit_scales = nn.ParameterDict(
            {
                pair_name(pair): nn.Parameter(torch.tensor(math.log(logit_scale_init)), requires_grad=learn_logit_scale)
                for pair in self.pairs
            }
        )
        self.logit_biases = nn.ParameterDict(
            {pair_name(pair): nn.Parameter(torch.tensor(float(logit_bias_init))) for pair in self.pairs}
            if kind == "siglip"
            else {}
        )

    @property
    def modalities(self) -> list[str]:
        """The modalities named by the pairs, in first-seen order."""
        seen: list[str] = []
        for pair in self.pairs:
            for modality in pair:
                if modality not in seen:
                    seen.append(modality)
        return seen

    @torch.no_grad()
    def clamp_logit_scales(self) -> None:
        """Clamp every log scale into ``[log min, log max]``; the trainer calls this after each step."""
        for parameter in self.logit_scales.values():
            parameter.clamp_(self.log_min, self.log_max)

    def scale(self, pair: tuple[str, str]) -> torch.Tensor:
        """The current (exponentiated) logit scale of ``pair``."""
        return self.logit_scales[pair_name(pair)].exp()

    def forward(
        self, embeddings: dict[str, torch.Tensor], loss_params_grad: bool = True
    ) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """Loss over all pairs for L2-normalized local ``embeddings`` ``{modality: (B, D)}``.

        Args:
            embeddings: this rank's normalized embeddings per modality (same B for all).
            loss_params_grad: False detaches temperatures and biases (used by the accumulation
                feature cache so that they receive their gradient once per optimizer step).

        Returns:
            ``{"loss": scalar, "terms": {"a-b": scalar}}``.
        """
        missing = [modality for modality in self.modalities if modality not in embeddings]
        if missing:
            raise KeyError(f"embeddings lack modalities {missing}; got {sorted(embeddings)}")
        gathered = {
            modality: gather_features(embeddings[modality], self.local_loss, self.gather_with_grad)
            for modality in self.modalities
        }
        terms: dict[str, torch.Tensor] = {}
        total = None
        for pair, weight in zip(self.pairs, self.pair_weights):
            log_scale = self.logit_scales[pair_name(pair)]
            scale = (log_scale if loss_params_grad else log_scale.detach()).exp()
            if self.kind == "clip":
                term = self._clip_term(embeddings, gathered, pair, scale)
            else:
                bias = self.logit_biases[pair_name(pair)]
                term = self._siglip_term(embeddings, gathered, pair, scale, bias if loss_params_grad else bias.detach())
            terms[pair_name(pair)] = term
            total = weight * term if total is None else total + weight * term
        return {"loss": total, "terms": terms}

    def _clip_term(
        self,
        local: dict[str, torch.Tensor],
        gathered: dict[str, torch.Tensor],
        pair: tuple[str, str],
        scale: torch.Tensor,
    ) -> torch.Tensor:
        first, second = pair
        context = current_context()
        if self.local_loss or not context.enabled:
            logits_first = scale * local[first] @ gathered[second].T
            logits_second = scale * local[second] @ gathered[first].T
            offset = local[first].shape[0] * context.rank if context.enabled else 0
            labels = torch.arange(local[first].shape[0], device=logits_first.device) + offset
        else:
            logits_first = scale * gathered[first] @ gathered[second].T
            logits_second = logits_first.T
            labels = torch.arange(gathered[first].shape[0], device=logits_first.device)
        return (F.cross_entropy(logits_first, labels) + F.cross_entropy(logits_second, labels)) / 2

    def _siglip_term(
        self,
        local: dict[str, torch.Tensor],
        gathered: dict[str, torch.Tensor],
        pair: tuple[str, str],
        scale: torch.Tensor,
        bias: torch.Tensor,
    ) -> torch.Tensor:
        # Local rows of the first modality against every gathered column of the second: every positive and
        # negative pair is counted exactly once across ranks (open_clip's "gather" implementation).
        first, second = pair
        context = current_context()
        rows = local[first]
        logits = scale * rows @ gathered[second].T + bias
        offset = rows.shape[0] * context.rank if context.enabled else 0
        labels = -torch.ones_like(logits)
        index = torch.arange(rows.shape[0], device=logits.device)
        labels[index, index + offset] = 1.0
        return -F.logsigmoid(labels * logits).sum() / rows.shape[0]
