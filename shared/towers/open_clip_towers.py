"""open_clip vision and text towers (native ViT, timm, native text transformer, Hugging Face text models)."""

from __future__ import annotations

from typing import Any

import open_clip
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg, _build_text_tower, _build_vision_tower
from torch import nn

from shared.towers._registry import register_tower


class OpenClipVisionTower(nn.Module):
    """An open_clip image tower; its output already includes open_clip's own projection to ``output_dim``.

    Attributes:
        preprocess: the eval image transform matching the tower (resize, crop, normalize).
        train_preprocess: the training transform (random resized crop).
    """

    def __init__(self, trunk: nn.Module, output_dim: int, image_size: int, mean: tuple, std: tuple) -> None:
        super().__init__()
        self.trunk = trunk
        self.output_dim = output_dim
        self.image_size = image_size
        self.train_preprocess = open_clip.image_transform(image_size, is_train=True, mean=mean, std=std)
        self.preprocess = open_clip.image_transform(image_size, is_train=False, mean=mean, std=std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encode a batch of images ``(B, 3, H, W)`` into ``(B, output_dim)`` features."""
        return self.trunk(images)

    def layer_groups(self) -> list[nn.Module]:
        """Transformer blocks (native ViT) or the timm trunk's stages, for partial unlocking."""
        transformer = getattr(self.trunk, "transformer", None)
        if transformer is not None and hasattr(transformer, "resblocks"):
            return list(transformer.resblocks)
        timm_trunk = getattr(self.trunk, "trunk", None)
        for name in ("blocks", "stages", "layers"):
            stack = getattr(timm_trunk, name, None)
            if stack is not None:
                return list(stack)
        return []


class OpenClipTextTower(nn.Module):
    """An open_clip text tower (native transformer or HF model); ``preprocess`` is the matching tokenizer."""

    def __init__(self, trunk: nn.Module, output_dim: int, tokenizer: Any) -> None:
        super().__init__()
        self.trunk = trunk
        self.output_dim = output_dim
        self.preprocess = tokenizer

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Encode token ids ``(B, L)`` into ``(B, output_dim)`` features."""
        return self.trunk(tokens)

    def layer_groups(self) -> list[nn.Module]:
        """Transformer blocks of the native tower or of the HF encoder."""
        transformer = getattr(self.trunk, "transformer", None)
        if transformer is not None and hasattr(transformer, "resblocks"):
            return list(transformer.resblocks)
        encoder = getattr(transformer, "encoder", None)  # an HF model sits in the same attribute
        if encoder is not None and hasattr(encoder, "layer"):
            return list(encoder.layer)
        return []


def registry_tower_config(model_name: str, part: str) -> tuple[int, dict[str, Any]]:
    """``(embed_dim, vision_cfg or text_cfg)`` of an open_clip registry model such as ``"ViT-B-16"``."""
    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        raise KeyError(f"open_clip has no model config named {model_name!r}")
    return int(model_cfg["embed_dim"]), dict(model_cfg[part])


@register_tower("open_clip_vision")
def build_open_clip_vision(
    output_dim: int = 512,
    vision_cfg: dict[str, Any] | None = None,
    model_name: str | None = None,
    mean: tuple[float, float, float] = open_clip.OPENAI_DATASET_MEAN,
    std: tuple[float, float, float] = open_clip.OPENAI_DATASET_STD,
) -> OpenClipVisionTower:
    """Build an open_clip vision tower from a ``vision_cfg`` dict or the vision part of a registry model.

    Args:
        output_dim: width of the tower's output (open_clip's ``embed_dim``).
        vision_cfg: fields of ``open_clip.model.CLIPVisionCfg`` (e.g. ``width``, ``layers``, ``patch_size``,
            ``image_size`` or ``timm_model_name``).
        model_name: an open_clip registry name (e.g. ``"ViT-B-16"``) whose vision config is used instead.
        mean: per-channel normalization mean of the preprocessing transform.
        std: per-channel normalization std of the preprocessing transform.
    """
    if model_name is not None:
        output_dim, vision_cfg = registry_tower_config(model_name, "vision_cfg")
    cfg = CLIPVisionCfg(**(vision_cfg or {}))
    trunk = _build_vision_tower(output_dim, cfg)
    image_size = cfg.image_size if isinstance(cfg.image_size, int) else cfg.image_size[0]
    return OpenClipVisionTower(trunk, output_dim, image_size, tuple(mean), tuple(std))


@register_tower("open_clip_text")
def build_open_clip_text(
    output_dim: int = 512,
    text_cfg: dict[str, Any] | None = None,
    model_name: str | None = None,
) -> OpenClipTextTower:
    """Build an open_clip text tower (native, or HF when ``text_cfg`` names ``hf_model_name``).

    Args:
        output_dim: width of the tower's output (open_clip's ``embed_dim``).
        text_cfg: fields of ``open_clip.model.CLIPTextCfg`` (``context_length``, ``vocab_size``, ``width``,
            ``layers`` … or ``hf_model_name``, ``hf_tokenizer_name``, ``hf_proj_type``, ``hf_pooler_type``).
            HF weights load from ``hf_model_name`` (a hub name or a local directory).
        model_name: an open_clip registry name whose text config is used instead.
    """
    if model_name is not None:
        output_dim, text_cfg = registry_tower_config(model_name, "text_cfg")
    cfg = CLIPTextCfg(**(text_cfg or {}))
    trunk = _build_text_tower(output_dim, cfg)
    if cfg.hf_tokenizer_name:
        tokenizer = open_clip.tokenizer.HFTokenizer(cfg.hf_tokenizer_name, context_length=cfg.context_length)
    else:
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=cfg.context_length)
    return OpenClipTextTower(trunk, output_dim, tokenizer)
