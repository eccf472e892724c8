"""AstroM3 towers and heads: Informer photometry encoder, GalSpecNet spectra CNN, metadata MLP.

The photometry and spectra towers are registered in the core tower registry (``astro_informer``,
``astro_galspecnet``); the metadata MLP (34 -> 512 -> 512, ReLU, dropout) is the core ``mlp`` tower. They are
assembled into the trimodal CLIP model by :func:`build_astrom3_model`, which
uses the core :class:`~shared.contrastive_model.ContrastiveModel` with the three pairwise CLIP terms
(photometry-spectra, spectra-metadata, metadata-photometry), each with its own learnable logit scale
initialised to 100 (``log 100``) and clamped to [1, 100].

Input contract (one batch):

- ``photometry``: ``{"values": (B, T, 9) float32, "mask": (B, T) bool}`` (1 = observed step) or a bare
  ``(B, T, 9)`` tensor (all steps observed). Channels: time in [0, 1], flux and flux error in MAD units,
  4 standardised photometric features, ``log10(MAD)`` and the span ``delta_t`` in years.
- ``spectra``: ``(B, 3, L)`` float32, L = 2,575 pixels at 2 Angstrom from 3,850 Angstrom.
- ``metadata``: ``(B, 34)`` float32 standardised catalogue features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from shared.contrastive_loss import ContrastiveLoss
from shared.contrastive_model import ContrastiveModel
from shared.towers import create_tower, register_tower

MODALITIES: tuple[str, str, str] = ("photometry", "spectra", "metadata")
"""The three AstroM3 modalities, in the order used for fused embeddings."""

CLIP_PAIRS: list[tuple[str, str]] = [("photometry", "spectra"), ("spectra", "metadata"), ("metadata", "photometry")]
"""The paper's three pairwise CLIP terms (each with its own temperature)."""

FINETUNE_MODES: tuple[str, ...] = ("photo", "spectra", "meta", "all")
"""Fine-tuning modes: one modality alone, or all three fused."""

MODE_TO_MODALITY: dict[str, str] = {"photo": "photometry", "spectra": "spectra", "meta": "metadata"}


def split_photometry_input(x: torch.Tensor | Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(values (B, T, C), mask (B, T) bool)`` from a photometry batch.

    Args:
        x: Either a ``(B, T, C)`` tensor (every step observed) or a mapping with ``values`` and ``mask``.

    Raises:
        ValueError: When the shapes do not match the contract.
    """
    if isinstance(x, Mapping):
        values, mask = x["values"], x["mask"]
    else:
        values, mask = x, None
    if values.dim() != 3:
        raise ValueError(f"photometry must be (batch, steps, channels), got shape {tuple(values.shape)}")
    if mask is None:
        mask = torch.ones(values.shape[:2], dtype=torch.bool, device=values.device)
    if mask.shape != values.shape[:2]:
        raise ValueError(f"photometry mask shape {tuple(mask.shape)} != steps shape {tuple(values.shape[:2])}")
    return values, mask.bool()


class ProbSparseSelfAttention(nn.Module):
    """Multi-head self-attention with Informer's ProbSparse query selection (Zhou et al., AAAI 2021).

    For each head the sparsity measurement of query ``q_i`` is estimated on ``u_k = factor * ceil(ln L)``
    randomly sampled keys ``S``::

        M(q_i) = max_{j in S} q_i k_j^T  -  (1 / L) * sum_{j in S} q_i k_j^T

    Only the ``u = factor * ceil(ln L)`` queries with the largest ``M`` ("active" queries) attend with
    ``softmax(q K^T / sqrt(d_head)) V``; every other ("lazy") query outputs the mean of ``V``. With
    ``attention="full"`` every query attends (ordinary scaled dot-product attention).

    With a key padding mask (``key_valid``), padded keys are excluded from the sampled measurement, the
    softmax and the lazy mean, and padded queries are never chosen as active. Without one (the paper's
    setting) padded steps attend and are attended to like real ones.

    In eval mode the key sample is drawn from a fixed-seed generator so embeddings are reproducible; in
    training it is drawn fresh each call, as in Informer.

    Args:
        d_model: Model width.
        n_heads: Number of heads (``d_model`` must be divisible by it).
        factor: ProbSparse sampling factor ``c`` (paper: 1).
        dropout: Dropout on the attention weights.
        attention: ``"prob"`` (ProbSparse) or ``"full"``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        factor: int = 1,
        dropout: float = 0.0,
        attention: Literal["prob", "full"] = "prob",
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        if attention not in ("prob", "full"):
            raise ValueError(f"attention must be 'prob' or 'full', got {attention!r}")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.factor = factor
        self.attention = attention
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.attn_dropout = nn.Dropout(dropout)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)

    def _sample_key_indices(self, length: int, n_sample: int, device: torch.device) -> torch.Tensor:
        if self.training:
            return torch.randint(length, (length, n_sample), device=device)
        generator = torch.Generator().manual_seed(0)
        return torch.randint(length, (length, n_sample), generator=generator).to(device)

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over ``x``.

        Args:
            x: ``(B, L, d_model)`` sequence.
            key_valid: Optional ``(B, L)`` bool, True for real (non-padded) steps.

        Returns:
            ``(B, L, d_model)``.
        """
        batch, length, d_model = x.shape
        q, k, v = (self._split_heads(proj(x)) for proj in (self.query, self.key, self.value))
        scale = 1.0 / math.sqrt(self.head_dim)
        n_active = min(self.factor * math.ceil(math.log(length)), length) if length > 1 else length

        if self.attention == "full" or n_active >= length:
            scores = torch.einsum("bhqe,bhke->bhqk", q, k) * scale
            if key_valid is not None:
                scores = scores.masked_fill(~key_valid[:, None, None, :], float("-inf"))
            weights = self.attn_dropout(torch.softmax(scores, dim=-1))
            context = torch.einsum("bhqk,bhke->bhqe", weights, v)
        else:
            context = self._prob_sparse(q, k, v, key_valid, n_active, scale)
        return self.out(context.transpose(1, 2).reshape(batch, length, d_model))

    def _prob_sparse(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_valid: torch.Tensor | None,
        n_active: int,
        scale: float,
    ) -> torch.Tensor:
        batch, heads, length, head_dim = q.shape
        n_sample = min(self.factor * math.ceil(math.log(length)), length)
        sample_idx = self._sample_key_indices(length, n_sample, q.device)  # (L_Q, u_k), shared by batch/heads
        sampled_scores = torch.einsum("bhqe,bhqse->bhqs", q, k[:, :, sample_idx, :])

        if key_valid is None:
            measurement = sampled_scores.amax(-1) - sampled_scores.sum(-1) / length
            lazy_context = v.mean(dim=2, keepdim=True).expand(batch, heads, length, head_dim)
        else:
            sampled_valid = key_valid[:, sample_idx][:, None]  # (B, 1, L_Q, u_k)
            n_valid = key_valid.sum(-1).clamp(min=1).to(q.dtype)  # (B,)
            peak = sampled_scores.masked_fill(~sampled_valid, float("-inf")).amax(-1)
            total = (sampled_scores * sampled_valid).sum(-1)
            measurement = peak - total / n_valid[:, None, None]
            # A padded query, or one whose sampled keys were all padding, is never made active.
            measurement = torch.nan_to_num(measurement, nan=float("-inf"))
            measurement = measurement.masked_fill(~key_valid[:, None, :], float("-inf"))
            weights_valid = key_valid[:, None, :, None].to(v.dtype)
            lazy_mean = (v * weights_valid).sum(2, keepdim=True) / n_valid[:, None, None, None]
            lazy_context = lazy_mean.expand(batch, heads, length, head_dim)

        active = measurement.topk(n_active, dim=-1).indices  # (B, H, u)
        gather_idx = active.unsqueeze(-1).expand(-1, -1, -1, head_dim)
        q_active = torch.gather(q, 2, gather_idx)
        scores = torch.einsum("bhue,bhke->bhuk", q_active, k) * scale
        if key_valid is not None:
            scores = scores.masked_fill(~key_valid[:, None, None, :], float("-inf"))
        weights = self.attn_dropout(torch.softmax(scores, dim=-1))
        active_context = torch.einsum("bhuk,bhke->bhue", weights, v)
        return lazy_context.scatter(2, gather_idx, active_context.to(lazy_context.dtype))


class InformerEncoderLayer(nn.Module):
    """Post-norm encoder layer: ``x = LN(x + Drop(Attn(x)))``; ``LN(x + Drop(Conv1x1(Drop(GELU(Conv1x1(x))))))``."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        factor: int,
        attention: Literal["prob", "full"],
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.attention = ProbSparseSelfAttention(d_model, n_heads, factor, attention_dropout, attention)
        self.ff_in = nn.Conv1d(d_model, d_ff, kernel_size=1)
        self.ff_out = nn.Conv1d(d_ff, d_model, kernel_size=1)
        self.norm_attention = nn.LayerNorm(d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the layer to ``(B, L, d_model)``."""
        x = self.norm_attention(x + self.dropout(self.attention(x, key_valid)))
        y = self.dropout(F.gelu(self.ff_in(x.transpose(1, 2))))
        y = self.dropout(self.ff_out(y).transpose(1, 2))
        return self.norm_ff(x + y)


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """Return the ``(length, d_model)`` sinusoidal position table of Vaswani et al. (2017)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: d_model // 2])
    return table


class InformerPhotometryEncoder(nn.Module):
    """Informer encoder for 9-channel light-curve windows (AstroM3's photometry tower).

    Token embedding ``Conv1d(in_channels -> d_model, kernel 3, circular padding, no bias)`` plus sinusoidal
    positions, ``n_layers`` :class:`InformerEncoderLayer` s (no distilling convolutions), a final LayerNorm
    and dropout; padded steps are zeroed, then the ``(T, d_model)`` map is flattened (the paper: 200 x 128
    = 25,600 features) or mask-averaged (``pooling="mean"``: ``d_model`` features).

    Args:
        in_channels: Channels per time step (9 in AstroM3).
        seq_len: Window length T (200); fixes ``output_dim`` when flattening.
        d_model: Model width (128).
        n_layers: Encoder layers (8).
        n_heads: Attention heads (4).
        d_ff: Feed-forward width (512).
        dropout: Dropout of the residual branches, feed-forward and output (paper pretraining: 0.245).
        factor: ProbSparse factor (1).
        attention: ``"prob"`` (paper) or ``"full"``.
        use_padding_mask: Zero padded input steps and hide them from attention (the paper does neither).
        pooling: ``"flatten"`` (paper) or ``"mean"`` (masked mean over observed steps).
        embedding_dropout: Dropout after the token + position embedding. The official ``DataEmbedding``
            (MeriDK/AstroM3 ``src/informer.py``) is built with its default 0.1 whatever the tower's dropout.
        attention_dropout: Dropout on the attention weights. The official ``ProbAttention`` defines one but
            never applies it, so the paper's model has none (0.0).
    """

    def __init__(
        self,
        in_channels: int = 9,
        seq_len: int = 200,
        d_model: int = 128,
        n_layers: int = 8,
        n_heads: int = 4,
        d_ff: int = 512,
        dropout: float = 0.1,
        factor: int = 1,
        attention: Literal["prob", "full"] = "prob",
        use_padding_mask: bool = False,
        pooling: Literal["flatten", "mean"] = "flatten",
        embedding_dropout: float = 0.1,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pooling not in ("flatten", "mean"):
            raise ValueError(f"pooling must be 'flatten' or 'mean', got {pooling!r}")
        self.seq_len = seq_len
        self.d_model = d_model
        self.use_padding_mask = use_padding_mask
        self.pooling = pooling
        self.output_dim = seq_len * d_model if pooling == "flatten" else d_model
        self.token_embedding = nn.Conv1d(
            in_channels, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False
        )
        nn.init.kaiming_normal_(self.token_embedding.weight, mode="fan_in", nonlinearity="leaky_relu")
        self.register_buffer("positions", sinusoidal_positions(seq_len, d_model), persistent=False)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.layers = nn.ModuleList(
            InformerEncoderLayer(d_model, n_heads, d_ff, dropout, factor, attention, attention_dropout)
            for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(d_model)
        self.output_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Encode photometry to ``(B, output_dim)`` features (see the module docstring for ``x``)."""
        values, mask = split_photometry_input(x)
        if values.shape[1] > self.seq_len:
            raise ValueError(f"photometry window has {values.shape[1]} steps; this encoder takes <= {self.seq_len}")
        if self.pooling == "flatten" and values.shape[1] != self.seq_len:
            raise ValueError(f"flattened photometry features need exactly {self.seq_len} steps, got {values.shape[1]}")
        if self.use_padding_mask:
            # The token convolution sees each step's neighbours: zero padded steps so nothing they hold leaks.
            values = values * mask.unsqueeze(-1).to(values.dtype)
        h = self.token_embedding(values.transpose(1, 2)).transpose(1, 2)
        h = self.embedding_dropout(h + self.positions[: h.shape[1]].to(h.dtype))
        key_valid = mask if self.use_padding_mask else None
        for layer in self.layers:
            h = layer(h, key_valid)
        h = self.output_dropout(self.final_norm(h))
        h = h * mask.unsqueeze(-1).to(h.dtype)
        if self.pooling == "flatten":
            return h.reshape(h.shape[0], -1)
        return h.sum(1) / mask.sum(1, keepdim=True).clamp(min=1).to(h.dtype)


class GalSpecNetSpectraEncoder(nn.Module):
    """GalSpecNet-style 1-D CNN for low-resolution spectra (AstroM3's spectra tower).

    ``Conv1d(k) -> ReLU [-> MaxPool1d(pool)]`` per stage (no pooling after the last), flatten, dropout.
    With the paper's 3 -> 64 -> 64 -> 32 -> 32 channels, kernel 3, pool 4 and 2,575 pixels the length
    runs 2575 -> 2573 -> 643 -> 641 -> 160 -> 158 -> 39 -> 37, so ``output_dim`` = 32 x 37 = 1,184; it is
    computed from ``length`` here rather than hard-coded.

    Args:
        in_channels: Input channels (3: flux, second array, ``log10(MAD)``).
        length: Pixels per spectrum (2,575).
        channels: Output channels of each convolution.
        kernel_size: Convolution kernel (3).
        pool_size: Max-pool size between stages (4).
        dropout: Dropout on the flattened features (paper pretraining: 0.339).
    """

    def __init__(
        self,
        in_channels: int = 3,
        length: int = 2575,
        channels: tuple[int, ...] | list[int] = (64, 64, 32, 32),
        kernel_size: int = 3,
        pool_size: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        previous, out_length = in_channels, length
        for index, width in enumerate(channels):
            stages += [nn.Conv1d(previous, width, kernel_size), nn.ReLU()]
            out_length -= kernel_size - 1
            if index < len(channels) - 1:
                stages.append(nn.MaxPool1d(pool_size))
                out_length //= pool_size
            previous = width
        if out_length < 1:
            raise ValueError(f"spectra of {length} pixels are too short for {len(channels)} conv stages")
        self.length = length
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout)
        self.output_dim = previous * out_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``(B, C, length)`` spectra to ``(B, output_dim)``."""
        if x.dim() != 3 or x.shape[-1] != self.length:
            raise ValueError(f"spectra must be (batch, channels, {self.length}), got shape {tuple(x.shape)}")
        return self.dropout(self.stages(x).flatten(1))


@register_tower("astro_informer")
def build_informer_tower(**kwargs: Any) -> InformerPhotometryEncoder:
    """Registry builder for :class:`InformerPhotometryEncoder`."""
    return InformerPhotometryEncoder(**kwargs)


@register_tower("astro_galspecnet")
def build_galspecnet_tower(**kwargs: Any) -> GalSpecNetSpectraEncoder:
    """Registry builder for :class:`GalSpecNetSpectraEncoder`."""
    return GalSpecNetSpectraEncoder(**kwargs)


@dataclass
class PhotometryTowerConfig:
    """Informer photometry tower settings (defaults: the paper's)."""

    seq_len: int = 200
    """Light-curve window length T in steps."""
    in_channels: int = 9
    """Channels per step."""
    d_model: int = 128
    """Model width."""
    n_layers: int = 8
    """Encoder layers."""
    n_heads: int = 4
    """Attention heads."""
    d_ff: int = 512
    """Feed-forward width."""
    dropout: float = 0.245
    """Dropout inside the tower."""
    factor: int = 1
    """ProbSparse sampling factor."""
    attention: str = "prob"
    """'prob' (ProbSparse, paper) or 'full' attention."""
    use_padding_mask: bool = False
    """Hide padded steps from attention (the paper does not)."""
    pooling: str = "flatten"
    """'flatten' (paper, T x d_model features) or 'mean' (masked mean, d_model features)."""
    embedding_dropout: float = 0.1
    """Dropout after the token + position embedding (official DataEmbedding: 0.1, whatever 'dropout' is)."""
    attention_dropout: float = 0.0
    """Dropout on the ProbSparse attention weights (official code: defined but never applied, so 0)."""


@dataclass
class SpectraTowerConfig:
    """GalSpecNet spectra tower settings (defaults: the paper's)."""

    length: int = 2575
    """Pixels per spectrum (2 Angstrom steps from 3,850 Angstrom)."""
    in_channels: int = 3
    """Channels per pixel."""
    channels: list[int] = field(default_factory=lambda: [64, 64, 32, 32])
    """Output channels of each convolution."""
    kernel_size: int = 3
    """Convolution kernel size."""
    pool_size: int = 4
    """Max-pool size between convolutions."""
    dropout: float = 0.339
    """Dropout on the flattened features."""


@dataclass
class MetadataTowerConfig:
    """Metadata MLP settings (defaults: the paper's): ``[Linear -> ReLU -> Dropout] x n_layers``."""

    input_dim: int = 34
    """Catalogue features."""
    hidden_dim: int = 512
    """Width of each layer."""
    n_layers: int = 2
    """Linear layers."""
    dropout: float = 0.160
    """Dropout after each layer."""


@dataclass
class AstroModelConfig:
    """The trimodal AstroM3 model: three towers, 512-d projections, three CLIP temperatures."""

    photometry: PhotometryTowerConfig = field(default_factory=PhotometryTowerConfig)
    """Photometry tower."""
    spectra: SpectraTowerConfig = field(default_factory=SpectraTowerConfig)
    """Spectra tower."""
    metadata: MetadataTowerConfig = field(default_factory=MetadataTowerConfig)
    """Metadata tower."""
    embed_dim: int = 512
    """Shared embedding width after the linear projections."""
    logit_scale_init: float = 100.0
    """Initial logit scale of each pair (exp of the learnable log scale; paper: 100)."""
    logit_scale_min: float = 1.0
    """Lower clamp of each logit scale."""
    logit_scale_max: float = 100.0
    """Upper clamp of each logit scale."""
    projection_bias: bool = True
    """Bias on the linear projections (the official ``nn.Linear`` projections carry one)."""


def build_towers(config: AstroModelConfig) -> dict[str, nn.Module]:
    """Create the three towers through the core registry."""
    photometry = vars(config.photometry).copy()
    spectra = vars(config.spectra).copy()
    spectra["channels"] = tuple(spectra["channels"])
    return {
        "photometry": create_tower("astro_informer", **photometry),
        "spectra": create_tower("astro_galspecnet", **spectra),
        "metadata": create_tower(
            "mlp",
            in_features=config.metadata.input_dim,
            hidden=(config.metadata.hidden_dim,) * config.metadata.n_layers,
            dropout=config.metadata.dropout,
        ),
    }


def build_clip_loss(config: AstroModelConfig) -> ContrastiveLoss:
    """The paper's loss: the three pairwise CLIP terms, each ``CE(L, arange) + CE(L^T, arange)``, summed."""
    return ContrastiveLoss(
        CLIP_PAIRS,
        kind="clip",
        logit_scale_init=config.logit_scale_init,
        logit_scale_max=config.logit_scale_max,
        logit_scale_min=config.logit_scale_min,
        # The core averages the two directions of a pair; AstroM3 sums them, hence weight 2.
        pair_weights=[2.0, 2.0, 2.0],
    )


def build_astrom3_model(config: AstroModelConfig | None = None) -> ContrastiveModel:
    """Build the trimodal CLIP model (towers -> 512-d linear projections -> L2 norm, 3 CLIP terms).

    Args:
        config: Model settings; the paper's when omitted.
    """
    config = config or AstroModelConfig()
    return ContrastiveModel(
        build_towers(config),
        config.embed_dim,
        CLIP_PAIRS,
        loss=build_clip_loss(config),
        projection="linear",
        projection_bias=config.projection_bias,
    )


def clip_matching_accuracy(
    embeddings: Mapping[str, torch.Tensor], logit_scales: Mapping[str, float] | None = None
) -> float:
    """AstroM3's CLIP-stage "accuracy": how often an object is matched to itself across modalities.

    For each pair ``(a, b)`` of :data:`CLIP_PAIRS` the logits ``s_ab * e_a @ e_b^T`` and their transpose
    are softmaxed row-wise; the six probability matrices are averaged and row ``i`` counts as correct
    when its argmax is ``i``.

    Args:
        embeddings: ``{modality: (N, D)}`` L2-normalised embeddings of the same N objects.
        logit_scales: ``{"a-b": scale}`` per pair; 100 (the paper's initial scale) when omitted.

    Returns:
        Fraction of the N objects matched correctly, in [0, 1].
    """
    probabilities = []
    for first, second in CLIP_PAIRS:
        scale = (logit_scales or {}).get(f"{first}-{second}", 100.0)
        logits = scale * embeddings[first].float() @ embeddings[second].float().T
        probabilities += [logits.softmax(-1), logits.T.softmax(-1)]
    mean_probability = torch.stack(probabilities).mean(0)
    targets = torch.arange(mean_probability.shape[0], device=mean_probability.device)
    return (mean_probability.argmax(-1) == targets).float().mean().item()


class AstroClassifier(nn.Module):
    """Supervised AstroM3 classifier: one modality's tower + linear head, or all three fused.

    Unimodal modes (``photo``, ``spectra``, ``meta``) put ``Linear(tower.output_dim -> n_classes)`` on the
    raw tower features (the paper drops the projection: 25,600 / 1,184 / 512 inputs). Mode ``all`` runs the
    trimodal model, averages (``fusion="avg"``) or concatenates (``"concat"``) the three L2-normalised
    512-d projections, then ``Linear(-> n_classes)``. All weights are trained.

    ``forward(batch)`` returns ``{"logits": (B, n_classes)}`` plus ``"loss"`` (cross-entropy) when the batch
    carries ``"label"``; this is the dict the core trainer expects.

    Args:
        mode: One of :data:`FINETUNE_MODES`.
        n_classes: Number of classes.
        model_config: Tower/projection settings (the paper's when omitted).
        fusion: ``"avg"`` (paper) or ``"concat"``; mode ``all`` only.
    """

    def __init__(
        self,
        mode: str,
        n_classes: int,
        model_config: AstroModelConfig | None = None,
        fusion: Literal["avg", "concat"] = "avg",
    ) -> None:
        super().__init__()
        if mode not in FINETUNE_MODES:
            raise ValueError(f"mode must be one of {FINETUNE_MODES}, got {mode!r}")
        if fusion not in ("avg", "concat"):
            raise ValueError(f"fusion must be 'avg' or 'concat', got {fusion!r}")
        self.mode = mode
        self.fusion = fusion
        self.n_classes = n_classes
        config = model_config or AstroModelConfig()
        if mode == "all":
            self.backbone = ContrastiveModel(
                build_towers(config),
                config.embed_dim,
                CLIP_PAIRS,
                projection="linear",
                projection_bias=config.projection_bias,
            )
            in_features = config.embed_dim * (3 if fusion == "concat" else 1)
        else:
            self.backbone = build_towers(config)[MODE_TO_MODALITY[mode]]
            in_features = self.backbone.output_dim
        self.head = nn.Linear(in_features, n_classes)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The batch keys this classifier reads."""
        return MODALITIES if self.mode == "all" else (MODE_TO_MODALITY[self.mode],)

    def features(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The head's input features for ``batch``."""
        if self.mode != "all":
            return self.backbone(batch[MODE_TO_MODALITY[self.mode]])
        embeddings = [self.backbone.encode(modality, batch[modality]) for modality in MODALITIES]
        if self.fusion == "concat":
            return torch.cat(embeddings, dim=-1)
        return torch.stack(embeddings).mean(0)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Classify ``batch``; see the class docstring."""
        logits = self.head(self.features(batch))
        output = {"logits": logits}
        if "label" in batch:
            output["loss"] = F.cross_entropy(logits.float(), batch["label"])
        return output

    def load_clip_encoders(self, clip_model: ContrastiveModel) -> list[str]:
        """Initialise from a pretrained trimodal CLIP model (the head stays random).

        Unimodal modes copy only their tower (the projection is dropped, as in the paper); ``all`` copies
        towers and projections.

        Returns:
            Names of the parameters and buffers that were copied (prefixed as in this classifier).
        """
        if self.mode == "all":
            # The temperatures come along (unused by the head) so the fused backbone is the CLIP model itself.
            source = clip_model.state_dict()
        else:
            source = clip_model.towers[MODE_TO_MODALITY[self.mode]].state_dict()
        self.backbone.load_state_dict(source, strict=True)
        return ["backbone." + name for name in source]


def demo_model_config() -> AstroModelConfig:
    """A small AstroM3 for 2 CPU cores: same architecture family, ~0.5M parameters instead of 15.9M.

    Informer 2 x 32-wide layers (ProbSparse, flattened 200 x 32 features), GalSpecNet with 16/16/8/8
    channels (8 x 37 = 296 features), metadata MLP 34 -> 64 -> 64, 64-d embeddings.
    """
    return AstroModelConfig(
        photometry=PhotometryTowerConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, dropout=0.1),
        spectra=SpectraTowerConfig(channels=[16, 16, 8, 8], dropout=0.1),
        metadata=MetadataTowerConfig(hidden_dim=64, dropout=0.1),
        embed_dim=64,
    )


def model_config_from_dict(values: Mapping[str, Any]) -> AstroModelConfig:
    """Rebuild an :class:`AstroModelConfig` from its plain-dict form (e.g. a run's ``config.yaml``)."""
    values = dict(values)
    # Runs saved before the field existed were built without projection biases.
    values.setdefault("projection_bias", False)
    nested = {
        "photometry": PhotometryTowerConfig(**values.pop("photometry", {})),
        "spectra": SpectraTowerConfig(**values.pop("spectra", {})),
        "metadata": MetadataTowerConfig(**values.pop("metadata", {})),
    }
    return AstroModelConfig(**nested, **values)
