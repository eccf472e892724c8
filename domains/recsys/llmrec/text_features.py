"""Item (and user-profile) text features: MiniLM sentence embeddings, cached on disk by content."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from shared.atomic_files import write_bytes_atomically

logger = logging.getLogger(__name__)


def encode_texts_minilm(texts: Sequence[str], batch_size: int = 64, max_length: int = 64) -> np.ndarray:
    """Embeds texts with the core's ``minilm_text`` tower (all-MiniLM-L6-v2, offline), L2-normalised.

    Args:
        texts: The texts.
        batch_size: Texts per forward pass.
        max_length: Tokens per text (the tower pads to this length, so short item texts use a short one).

    Returns:
        (len(texts), 384) float32.
    """
    from shared.towers import create_tower

    tower = create_tower("minilm_text", max_length=max_length).eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            outputs.append(tower(tower.preprocess(chunk)).float())
    if not outputs:
        return np.zeros((0, tower.output_dim), dtype=np.float32)
    return torch.nn.functional.normalize(torch.cat(outputs), dim=-1).numpy().astype(np.float32)


def cached_text_features(texts: Sequence[str], cache_dir: str | Path, encoder: str = "minilm") -> np.ndarray:
    """Text features for ``texts``, cached on disk under a hash of the texts and the encoder name.

    Args:
        texts: The texts (order matters).
        cache_dir: Cache folder (e.g. ``runs/recsys/cache``).
        encoder: ``minilm`` (all-MiniLM-L6-v2, 384-d).

    Returns:
        (len(texts), F) float32, L2-normalised rows.
    """
    if encoder != "minilm":
        raise ValueError(f"unknown text encoder {encoder!r}; available: 'minilm'")
    digest = hashlib.sha256(("\x1e".join(texts) + f"\x1f{encoder}:64").encode("utf-8")).hexdigest()[:24]
    path = Path(cache_dir) / f"text_features_{encoder}_{digest}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    logger.info("encoding %d item texts with %s (cached at %s)", len(texts), encoder, path)
    features = encode_texts_minilm(texts)
    buffer = io.BytesIO()
    np.save(buffer, features, allow_pickle=False)
    write_bytes_atomically(path, buffer.getvalue())
    return features
