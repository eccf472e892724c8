"""Generic towers for scientific modalities: a masked time-series transformer, a 1-D CNN, an MLP."""

from __future__ import annotations

import math

import torch
from torch import nn

from shared.towers._registry import register_tower


class SinusoidalTimeEncoding(nn.Module):
    """Sinusoidal encoding of continuous (irregular) timestamps, added to the step embeddings."""

    def __init__(self, width: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        half = width // 2
        self.register_buffer(
            "frequencies", torch.exp(-math.log(max_period) * torch.arange(half) / max(half, 1)), persistent=False
        )
        self.width = width

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        """``times`` ``(B, T)`` (any unit, e.g. scaled to [0, 1000]) → ``(B, T, width)``."""
        angles = times.unsqueeze(-1) * self.frequencies
        encoding = torch.cat([angles.sin(), angles.cos()], dim=-1)
        if encoding.shape[-1] < self.width:
            encoding = nn.functional.pad(encoding, (0, self.width - encoding.shape[-1]))
        return encoding


class MaskedSequenceTransformer(nn.Module):
    """Transformer encoder over ``(B, T, C)`` sequences with a padding mask, mean-pooled over valid steps.

    Input is a dict ``{"values": (B, T, C), "mask": (B, T) bool (True = valid), "times": (B, T) optional}``
    or a bare tensor (all steps valid).
    """

    def __init__(
        self,
        in_channels: int,
        width: int = 128,
        layers: int = 4,
        heads: int = 4,
        ff_width: int = 512,
        dropout: float = 0.1,
        time_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        self.input_projection = nn.Linear(in_channels, width)
        self.time_encoding = SinusoidalTimeEncoding(width)
        self.time_scale = time_scale
        layer = nn.TransformerEncoderLayer(
            width, heads, ff_width, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(width)
        self.output_dim = width

    def forward(self, batch: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Encode into ``(B, width)`` features (masked mean over valid steps)."""
        if isinstance(batch, torch.Tensor):
            batch = {"values": batch}
        values = batch["values"]
        mask = batch.get("mask")
        if mask is None:
            mask = torch.ones(values.shape[:2], dtype=torch.bool, device=values.device)
        hidden = self.input_projection(values)
        times = batch.get("times")
        if times is not None:
            hidden = hidden + self.time_encoding(times * self.time_scale)
        hidden = self.encoder(hidden, src_key_padding_mask=~mask)
        hidden = self.final_norm(hidden)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)

    def layer_groups(self) -> list[nn.Module]:
        """The encoder layers."""
        return list(self.encoder.layers)


class Conv1dEncoder(nn.Module):
    """Stack of Conv1d → BatchNorm → ReLU → MaxPool blocks over ``(B, C, L)``, globally pooled."""

    def __init__(
        self,
        in_channels: int,
        channels: tuple[int, ...] = (32, 64, 128, 128),
        kernel_size: int = 5,
        pool: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        blocks = []
        previous = in_channels
        for width in channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv1d(previous, width, kernel_size, padding=kernel_size // 2),
                    nn.BatchNorm1d(width),
                    nn.ReLU(),
                    nn.MaxPool1d(pool),
                )
            )
            previous = width
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout)
        self.output_dim = previous

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        """``(B, C, L)`` → ``(B, channels[-1])`` (global average over length)."""
        hidden = signal
        for block in self.blocks:
            hidden = block(hidden)
        return self.dropout(hidden.mean(dim=-1))

    def layer_groups(self) -> list[nn.Module]:
        """The convolution blocks."""
        return list(self.blocks)


class TabularMLP(nn.Module):
    """Linear → activation → dropout layers over ``(B, in_features)`` tabular features."""

    def __init__(
        self, in_features: int, hidden: tuple[int, ...] = (128, 128), dropout: float = 0.0, activation: str = "relu"
    ) -> None:
        super().__init__()
        activations = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}
        if activation not in activations:
            raise ValueError(f"activation must be one of {sorted(activations)}, got {activation!r}")
        layers = []
        previous = in_features
        for width in hidden:
            layers.append(nn.Sequential(nn.Linear(previous, width), activations[activation](), nn.Dropout(dropout)))
            previous = width
        self.layers = nn.ModuleList(layers)
        self.output_dim = previous

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, in_features)`` → ``(B, hidden[-1])``."""
        hidden = features
        for layer in self.layers:
            hidden = layer(hidden)
        return hidden

    def layer_groups(self) -> list[nn.Module]:
        """The hidden layers."""
        return list(self.layers)


@register_tower("sequence_transformer")
def build_sequence_transformer(
    in_channels: int,
    width: int = 128,
    layers: int = 4,
    heads: int = 4,
    ff_width: int = 512,
    dropout: float = 0.1,
    time_scale: float = 1000.0,
) -> MaskedSequenceTransformer:
    """Masked transformer for (irregular) time series; see :class:`MaskedSequenceTransformer`."""
    return MaskedSequenceTransformer(in_channels, width, layers, heads, ff_width, dropout, time_scale)


@register_tower("cnn1d")
def build_cnn1d(
    in_channels: int,
    channels: tuple[int, ...] = (32, 64, 128, 128),
    kernel_size: int = 5,
    pool: int = 2,
    dropout: float = 0.0,
) -> Conv1dEncoder:
    """1-D CNN for spectra and other gridded 1-D signals; see :class:`Conv1dEncoder`."""
    return Conv1dEncoder(in_channels, tuple(channels), kernel_size, pool, dropout)


@register_tower("mlp")
def build_mlp(
    in_features: int, hidden: tuple[int, ...] = (128, 128), dropout: float = 0.0, activation: str = "relu"
) -> TabularMLP:
    """MLP for tabular features; see :class:`TabularMLP`."""
    return TabularMLP(in_features, tuple(hidden), dropout, activation)
