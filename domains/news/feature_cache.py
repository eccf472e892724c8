"""Frozen features of a shard folder, computed once and cached, so training and evaluation run the heads only.

:func:`load_post_table` decodes every post of a shard folder (written by ``domains.news.ingest``) and
computes its frozen base features with :class:`~domains.news.frozen_encoders.NewsEncoders`, each distinct
text and image once. The result is cached as ``<cache_dir>/<fingerprint>.pt``; the fingerprint covers the
shard manifest and the encoder settings, so a changed data set or encoder never reads a stale cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from domains.news.data import NewsFormatError, decode_news_sample, open_post_image
from domains.news.frozen_encoders import NewsEncoders
from shared.atomic_files import atomic_output
from shared.user_errors import UserError

DEFAULT_CACHE_DIR = ".tmp/news/features"
"""Where frozen features are cached by default (relative to the working directory)."""
INGEST_COMMAND = "python -m domains.news.ingest"


def set_cpu_threads(threads: int) -> None:
    """Fix torch's CPU thread count for the whole run (0 = leave torch's default).

    Why: on the CPU, matrix products and reductions split their work by thread, and the MKL BLAS torch uses
    may change its thread count with the machine's load; float sums in another order differ in the last
    bits, and validation-based selection and early stopping turn those bits into other weights. One
    fixed thread count (the same for cached features and training; it is part of the feature cache's
    fingerprint) makes a CPU run with the same seed repeat bit for bit.
    """
    if threads > 0:
        torch.set_num_threads(threads)


def require_shard_folder(path: str | Path, flag: str = "--input") -> Path:
    """The shard folder given by ``flag``, checked to be one (a folder with ``manifest.json``).

    Raises:
        UserError: the path does not exist, is a file, or holds no ``manifest.json`` (names the ingest command).
    """
    folder = Path(path)
    if not folder.exists():
        raise UserError(f"{flag} {folder}: no such folder; write shards with {INGEST_COMMAND} --out_dir {folder}")
    if not folder.is_dir():
        raise UserError(f"{flag} {folder}: is a file; expected a shard folder written by {INGEST_COMMAND}")
    if not (folder / "manifest.json").is_file():
        raise UserError(f"{flag} {folder}: no manifest.json; write shards with {INGEST_COMMAND} --out_dir {folder}")
    return folder


@dataclass
class PostTable:
    """All posts of a shard folder with their frozen base features (row-aligned)."""

    keys: list[str]
    texts: list[str]
    labels: np.ndarray
    splits: list[str | None]
    base: dict[str, torch.Tensor]
    meta: list[dict[str, Any]]
    source: str = ""
    """The shard folder the posts came from (for messages)."""

    def rows(self, split: str) -> np.ndarray:
        """Row indices of one split."""
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)


def _decode_for_features(sample: dict[str, Any]) -> dict[str, Any]:
    """Shard sample → strings and numbers only (the core stream collates them): image bytes as hex."""
    decoded = decode_news_sample(sample)
    image_bytes = sample.get("jpg") or sample.get("png")
    return {
        "key": decoded["key"],
        "text": decoded["text"],
        "text_en": decoded["text_en"] or "",
        "label": decoded["label"],
        "split": decoded["split"] or "",
        "meta_json": json.dumps(decoded["meta"], ensure_ascii=False),
        "image_sha": hashlib.sha256(image_bytes).hexdigest(),
        "image_hex": image_bytes.hex(),
    }


def _iterate_samples(shard_dir: Path) -> tuple[Iterator[dict[str, Any]], Any]:
    from shared.shard_stream import ShardStream

    # Every post on every rank (node_split="none"): the trainer splits the batches between ranks.
    stream = ShardStream(str(shard_dir), _decode_for_features, batch_size=1, shuffle_buffer=0, node_split="none")

    def one_by_one() -> Iterator[dict[str, Any]]:
        for batch in stream.batches(0):
            yield {k: (v[0].item() if isinstance(v, torch.Tensor) else v[0]) for k, v in batch.items()}

    return one_by_one(), stream


def dataset_fingerprint(shard_dir: Path, encoders: NewsEncoders) -> str:
    """sha256 over the shard manifest, the encoder settings and torch's CPU thread count."""
    from shared.shards import read_manifest

    manifest = read_manifest(shard_dir)
    shards = [{k: v for k, v in s.items() if k in ("name", "sha256", "samples")} for s in manifest.get("shards", [])]
    # The thread count changes float sums in the last bits: features from another count are not reused.
    identity = {"shards": shards, "cpu_threads": torch.get_num_threads(), **encoders.identity()}
    payload = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def load_post_table(shard_dir: str | Path, encoders: NewsEncoders, cache_dir: str | Path | None) -> PostTable:
    """Decode every post of a shard folder and compute (or load cached) frozen features.

    Each distinct image and each distinct text is encoded once (posts share their features). Corrupt
    samples are skipped by the core stream and reported.

    Raises:
        NewsFormatError: the folder yields no decodable post.
    """
    shard_dir = Path(shard_dir)
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"{dataset_fingerprint(shard_dir, encoders)}.pt"
        if cache_path.is_file():
            cached = torch.load(cache_path, map_location="cpu", weights_only=True)
            return PostTable(
                keys=cached["keys"],
                texts=cached["texts"],
                labels=np.asarray(cached["labels"], dtype=np.int64),
                splits=[s or None for s in cached["splits"]],
                base=cached["base"],
                meta=[json.loads(m) for m in cached["meta"]],
                source=str(shard_dir),
            )
    samples, stream = _iterate_samples(shard_dir)
    keys, texts, labels, splits, metas = [], [], [], [], []
    image_index: dict[str, int] = {}
    row_image: list[int] = []
    text_index: dict[tuple[str, str], int] = {}
    row_text: list[int] = []
    pending_images: list[Image.Image] = []
    pending_texts: list[tuple[str, str]] = []
    text_chunks: list[dict[str, torch.Tensor]] = []
    image_chunks: list[dict[str, torch.Tensor]] = []
    use_en = encoders.config.clip_text_field == "text_en"

    def flush_texts() -> None:
        if pending_texts:
            text_chunks.append(encoders.text_base([t for t, _ in pending_texts], [c for _, c in pending_texts]))
            pending_texts.clear()

    def flush_images() -> None:
        if pending_images:
            image_chunks.append(encoders.image_base(pending_images))
            pending_images.clear()

    for sample in samples:
        clip_text = sample["text_en"] if use_en and sample["text_en"] else sample["text"]
        keys.append(sample["key"])
        texts.append(sample["text"])
        labels.append(int(sample["label"]))
        splits.append(sample["split"] or None)
        metas.append(sample["meta_json"])
        if (sample["text"], clip_text) not in text_index:
            text_index[(sample["text"], clip_text)] = len(text_index)
            pending_texts.append((sample["text"], clip_text))
        row_text.append(text_index[(sample["text"], clip_text)])
        if sample["image_sha"] not in image_index:
            image_index[sample["image_sha"]] = len(image_index)
            pending_images.append(open_post_image(bytes.fromhex(sample["image_hex"]), where=sample["key"]))
        row_image.append(image_index[sample["image_sha"]])
        if len(pending_texts) >= encoders.config.batch_size:
            flush_texts()
        if len(pending_images) >= encoders.config.batch_size:
            flush_images()
    flush_texts()
    flush_images()
    if not keys:
        raise NewsFormatError(f"{shard_dir}: no decodable post (stream report: {stream.report()})")
    failed = stream.report().get("samples_failed", 0)
    if failed:
        print(f"{shard_dir}: skipped {failed} corrupt sample(s): {stream.report().get('failures_by_reason')}")
    gather_text, gather_image = torch.as_tensor(row_text), torch.as_tensor(row_image)
    base = {k: torch.cat([c[k] for c in text_chunks])[gather_text] for k in text_chunks[0]}
    base |= {k: torch.cat([c[k] for c in image_chunks])[gather_image] for k in image_chunks[0]}
    meta = [json.loads(m) for m in metas]
    table = PostTable(keys, texts, np.asarray(labels, dtype=np.int64), splits, base, meta, source=str(shard_dir))
    if cache_path is not None:
        payload = {"keys": keys, "texts": texts, "labels": labels, "splits": [s or "" for s in splits]}
        with atomic_output(cache_path, suffix=".pt") as temporary:
            torch.save(payload | {"base": base, "meta": metas}, temporary)
    return table
