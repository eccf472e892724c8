"""BIOMEDICA-format shards: reading samples, the dataset's filters and streaming from the Hugging Face Hub.

A BIOMEDICA sample is a ``jpg`` image, a ``txt`` caption and a ``json`` metadata record (licence,
concept labels, panel type, image size). :class:`BiomedicaFilter` turns the dataset's selection rules
into core ``MetadataFilter`` objects for ``ShardStream`` (metadata rules) plus the caption and image-size
rules :class:`BiomedicaDecoder` applies after decoding; :func:`open_biomedica_stream` builds the core
stream with errors that name the flag; :func:`huggingface_shard_urls` lists a Hub dataset's shards as
streamable URLs (with the access token sent as a header, never in a URL).
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from shared.shard_stream import MetadataFilter, ShardStream
from shared.user_errors import UserError

LicenseSubset = Literal["commercial", "noncommercial", "other"]

NO_CAPTION_MARKERS = frozenset({"", "no caption found"})


def license_subset(license_text: str | None) -> LicenseSubset:
    """Map an article licence string to BIOMEDICA's subset (commercial / noncommercial / other).

    ``commercial`` = CC0, CC BY, CC BY-SA, CC BY-ND and public domain; ``noncommercial`` = any CC
    licence with NC; everything else (unknown, publisher-specific) is ``other``.
    """
    text = (license_text or "").lower().replace("_", "-").replace(" ", "-")
    if "cc0" in text or "public-domain" in text or "publicdomain" in text:
        return "commercial"
    if "cc-by" in text or "ccby" in text or "creativecommons.org/licenses/by" in text:
        return "noncommercial" if "-nc" in text or "by-nc" in text else "commercial"
    return "other"


@dataclass
class BiomedicaFilter:
    """Which BIOMEDICA samples to keep. Empty lists keep everything for that field."""

    license_subsets: list[str] = field(default_factory=list)
    """Keep only these licence subsets: commercial, noncommercial, other."""
    concepts: list[str] = field(default_factory=list)
    """Keep samples whose primary (or secondary) concept labels include any of these (case-insensitive)."""
    panel_types: list[str] = field(default_factory=list)
    """Keep only these image_panel_type values (case-insensitive)."""
    min_side_px: int = 21
    """Drop images whose width or height is below this (BIOMEDICA keeps sides > 20 px)."""
    drop_missing_captions: bool = True
    """Drop empty captions and 'No caption found'."""

    def __post_init__(self) -> None:
        unknown = set(self.license_subsets) - {"commercial", "noncommercial", "other"}
        if unknown:
            raise ValueError(f"unknown licence subset(s) {sorted(unknown)}; use commercial, noncommercial, other")

    def stream_filters(self) -> list[Any]:
        """The metadata rules as core ``MetadataFilter`` objects for ``ShardStream(filters=...)``.

        The caption rule needs the ``txt`` field, which metadata filters do not see: decoders apply it
        with :meth:`caption_rejection` (see :class:`BiomedicaDecoder`).
        """
        rules: list[Any] = [MinImageSideFilter(field="image_size", min_value=self.min_side_px)]
        if self.license_subsets:
            rules.append(LicenseSubsetFilter(field="article_license", one_of=tuple(self.license_subsets)))
        if self.concepts:
            rules.append(ConceptFilter(field="image_primary_label", any_of=tuple(self.concepts)))
        if self.panel_types:
            rules.append(MetadataFilter(field="image_panel_type", one_of=tuple(self.panel_types)))
        return rules

    def caption_rejection(self, caption: str) -> str | None:
        """'missing caption' for empty / 'No caption found' captions (when enabled), else None."""
        if self.drop_missing_captions and caption.strip().lower() in NO_CAPTION_MARKERS:
            return "missing caption"
        return None


class LicenseSubsetFilter(MetadataFilter):
    """Keeps samples whose ``article_license`` falls in one of the ``one_of`` subsets (see :func:`license_subset`)."""

    def matches(self, metadata: dict[str, Any]) -> bool:
        """Whether the sample's licence subset is wanted (a missing licence counts as 'other')."""
        return license_subset(metadata.get(self.field)) in set(self.one_of or ())


class ConceptFilter(MetadataFilter):
    """Keeps samples whose primary or secondary concept labels include one of ``any_of`` (case-insensitive)."""

    def matches(self, metadata: dict[str, Any]) -> bool:
        """Whether any concept label matches."""
        labels = _as_list(metadata.get("image_primary_label")) + _as_list(metadata.get("image_secondary_label"))
        wanted = {str(c).lower() for c in self.any_of or ()}
        return any(str(label).lower() in wanted for label in labels)


class MinImageSideFilter(MetadataFilter):
    """Keeps samples whose ``image_size`` [width, height] has both sides ≥ ``min_value`` px (kept when absent)."""

    def matches(self, metadata: dict[str, Any]) -> bool:
        """Whether both sides are large enough."""
        size = metadata.get(self.field)
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            return True  # checked after decoding, from the image itself
        return min(float(size[0]), float(size[1])) >= float(self.min_value)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def read_biomedica_sample(raw: dict[str, Any]) -> dict[str, Any]:
    """Decode one raw webdataset sample in the BIOMEDICA layout.

    Args:
        raw: Bytes per extension as webdataset yields them (``__key__``, ``jpg``/``png``, ``txt``, ``json``).

    Returns:
        ``{"key", "image" (PIL RGB), "caption", "metadata"}``. The metadata's ``image_size`` is set
        from the decoded image when the JSON lacks it.

    Raises:
        ValueError: Missing image or caption, undecodable JSON or image (the stream skips and counts these).
    """
    key = raw.get("__key__", "?")
    image_bytes = raw.get("jpg") or raw.get("jpeg") or raw.get("png") or raw.get("webp")
    if image_bytes is None:
        raise ValueError(f"sample {key}: no image (jpg/png/webp)")
    if "txt" not in raw:
        raise ValueError(f"sample {key}: no caption (txt)")
    caption = raw["txt"].decode("utf-8") if isinstance(raw["txt"], bytes) else str(raw["txt"])
    metadata: dict[str, Any] = {}
    if raw.get("json") is not None:
        try:
            metadata = json.loads(raw["json"]) if isinstance(raw["json"], (bytes, str)) else dict(raw["json"])
        except json.JSONDecodeError as error:
            raise ValueError(f"sample {key}: metadata is not valid JSON ({error.msg})") from error
    try:
        with Image.open(io.BytesIO(image_bytes)) as pil:
            image = pil.convert("RGB")
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"sample {key}: image could not be decoded ({type(error).__name__})") from error
    metadata.setdefault("image_size", [image.width, image.height])
    return {"key": key, "image": image, "caption": caption.strip(), "metadata": metadata}


class FilteredSampleError(ValueError):
    """A decoded sample failed a content rule (caption, image size); the stream counts it and moves on."""


#: JSON fields copied into the store / evaluation next to each vector (never anything identifying).
STORE_METADATA_FIELDS = ("image_set", "image_primary_label", "image_secondary_label", "image_panel_type",
                         "article_license", "caption_source")  # fmt: skip


class BiomedicaDecoder:
    """``decode_sample`` for the core ``ShardStream``: BIOMEDICA raw sample → model inputs.

    Returns ``{"image": (3, H, W) float tensor, "text": (L,) token ids, "key": str, "caption": str,
    "label": str, "metadata": JSON str}``; ``label`` is the value at ``label_field`` (first element of a
    list; "" when absent or no field is set).

    Args:
        transform: Image transform (open_clip's preprocess for training or validation).
        tokenizer: open_clip tokenizer (``tokenizer([caption]) -> (1, L)``).
        rules: Content rules (caption, minimum side); None applies BIOMEDICA's defaults.
        label_field: Dotted path of a class label in the JSON (for zero-shot evaluation).
    """

    def __init__(
        self, transform: Any, tokenizer: Any, rules: BiomedicaFilter | None = None, label_field: str = ""
    ) -> None:
        self.transform = transform
        self.tokenizer = tokenizer
        self.rules = rules or BiomedicaFilter()
        self.label_field = label_field

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Decode one sample; raises on corrupt data or a failed content rule (the stream skips it)."""
        sample = read_biomedica_sample(raw)
        reason = self.rules.caption_rejection(sample["caption"])
        if reason is None and min(sample["image"].size) < self.rules.min_side_px:
            reason = f"image side below {self.rules.min_side_px} px"
        if reason is not None:
            raise FilteredSampleError(f"sample {sample['key']}: {reason}")
        label: Any = ""
        if self.label_field:
            value: Any = sample["metadata"]
            for part in self.label_field.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            label = _as_list(value)[0] if _as_list(value) else ""
        kept = {name: sample["metadata"][name] for name in STORE_METADATA_FIELDS if name in sample["metadata"]}
        return {
            "image": self.transform(sample["image"]),
            "text": self.tokenizer([sample["caption"]])[0],
            "key": sample["key"],
            "caption": sample["caption"],
            "label": str(label),
            "metadata": json.dumps(kept, sort_keys=True),
        }


def open_biomedica_stream(
    urls: str, decoder: Any, batch_size: int, flag: str = "--input", **options: Any
) -> ShardStream:
    """The core ``ShardStream`` over ``urls``; a missing or empty shard source is a :class:`UserError` naming ``flag``.

    Args:
        urls: Shard sources (folder, brace pattern, URL; joined with ``::``).
        decoder: ``decode_sample`` for the stream (usually a :class:`BiomedicaDecoder`).
        batch_size: Samples per batch.
        flag: The command-line flag that gave ``urls`` (for the message).
        **options: Further ``ShardStream`` arguments (mode, seed, filters, balance, ...).
    """
    if not urls.strip():
        raise UserError(f"{flag}: no shard source given")
    try:
        return ShardStream(urls, decoder, batch_size, **options)
    except FileNotFoundError as error:
        raise UserError(f"{flag} {urls}: {error}") from None


def check_shard_source(urls: str, flag: str) -> None:
    """Refuse, before any model is built, a shard source that cannot be read at all: a missing or empty
    folder, or local files none of which is a tar archive. (One bad shard among good ones is the stream's to
    skip and count; remote and ``pipe:`` sources are checked as they stream.)

    Raises:
        UserError: naming ``flag`` and the offending path.
    """
    stream = open_biomedica_stream(urls, None, 1, flag, mode="epoch", shuffle_buffer=0)
    local = [
        Path(url.removeprefix("file://"))
        for url in stream.shard_urls
        if url.startswith("file://") or ("://" not in url and not url.startswith("pipe:"))
    ]
    files = [path for path in local if path.is_file()]
    if files and len(files) == len(stream.shard_urls) and not any(tarfile.is_tarfile(path) for path in files):
        raise UserError(f"{flag} {files[0]}: not a tar shard (webdataset shards are .tar archives)")


def eval_stream(urls: str, decoder: Any, batch_size: int, flag: str = "--input") -> ShardStream:
    """An unshuffled single pass over the whole shard set (evaluation, embedding), on any rank."""
    return open_biomedica_stream(urls, decoder, batch_size, flag, mode="epoch", shuffle_buffer=0, drop_last=False,
                                 node_split="none")  # fmt: skip


def huggingface_shard_urls(
    repo_id: str,
    shards: Sequence[str] | None = None,
    revision: str = "main",
    endpoint: str = "https://huggingface.co",
    token_env: str | None = "HF_TOKEN",  # noqa: S107 — the name of a variable, not a secret
    pattern: str = r"\.tar$",
) -> list[str]:
    """Streaming URLs for the ``.tar`` shards of a Hugging Face dataset repository.

    With a token variable, each URL is a ``pipe:`` command that sends ``Authorization: Bearer
    $<token_env>`` with curl (needed for gated sets such as BIOMEDICA). The token is expanded by the
    shell at read time and handed to curl on its standard input (``-H @-``), so it appears in no URL,
    config, log or process list. Join the result with ``::`` for the core ``ShardStream``.

    Args:
        repo_id: Dataset repository, e.g. ``BIOMEDICA/biomedica_webdataset_24M``.
        shards: Shard paths inside the repository; listed with ``HfApi.list_repo_files`` when None
            (needs network).
        revision: Branch, tag or commit.
        endpoint: Hub address (a mirror, or a loopback server in tests).
        token_env: Environment variable holding the access token; None for public sets (plain https URLs).
        pattern: Regular expression selecting shard files when listing.

    Returns:
        One URL per shard, sorted by shard path.
    """
    if shards is None:
        from huggingface_hub import HfApi

        token = os.environ.get(token_env) if token_env else None
        files = HfApi(endpoint=endpoint).list_repo_files(repo_id, repo_type="dataset", revision=revision, token=token)
        shards = [f for f in files if re.search(pattern, f)]
        if not shards:
            raise ValueError(f"{repo_id}: no files matching {pattern!r} in the dataset repository")
    urls = []
    for shard in sorted(shards):
        url = f"{endpoint.rstrip('/')}/datasets/{repo_id}/resolve/{revision}/{shard.lstrip('/')}"
        if token_env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token_env):
                raise ValueError(f"token_env must be an environment variable name, got {token_env!r}")
            # echo is a shell builtin (the token reaches no argv); no backslashes or braces, which the
            # stream's brace expansion would rewrite.
            header = f'echo "Authorization: Bearer ${token_env}"'
            urls.append(f"pipe:{header} | curl --silent --show-error --fail --location -H @- {shlex.quote(url)}")
        else:
            urls.append(url)
    return urls
