"""One image–caption pair on its way into a BIOMEDICA-format shard, and the writer of those shards.

Every reader (:mod:`domains.biomed.dicom`, :mod:`domains.biomed.image_folder`, the demo corpus) yields
:class:`BiomedSample` objects; :func:`biomedica_sample_dict` turns one into a webdataset sample in the
BIOMEDICA layout (``jpg`` image, ``txt`` caption, ``json`` metadata) and :func:`write_sample_shards`
writes them with the core ``ShardWriter`` (shards plus a manifest that lists the skipped inputs).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shared.atomic_files import write_text_atomically
from shared.user_errors import UserError

#: Metadata fields whose value counts go into an ingest manifest.
TRACKED_FIELDS = ("article_license", "image_panel_type", "image_set", "caption_source", "image_secondary_label")
#: Metadata fields whose counts concept-balanced streaming reads from the manifest.
CONCEPT_FIELDS = ("image_primary_label",)


@dataclass
class BiomedSample:
    """One image–caption pair on its way into a BIOMEDICA-format shard.

    Attributes:
        key: Webdataset ``__key__``; never contains patient identifiers.
        image: RGB image (uint8, H×W×3).
        caption: Caption text.
        metadata: JSON-serialisable metadata in the BIOMEDICA schema (plus a ``dicom`` section for
            DICOM inputs recording the preprocessing steps applied).
        manifest_record: What the manifest lists about this sample (``samples`` section), or None for
            nothing: e.g. that caption scrubbing ran and how many spans it replaced, burned-in text flags.
    """

    key: str
    image: np.ndarray
    caption: str
    metadata: dict[str, Any]
    manifest_record: dict[str, Any] | None = None


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB uint8 array as JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def biomedica_sample_dict(sample: BiomedSample, jpeg_quality: int = 95) -> dict[str, Any]:
    """Turn a sample into a webdataset dict with BIOMEDICA's keys (``__key__``, ``jpg``, ``txt``, ``json``)."""
    return {
        "__key__": sample.key,
        "jpg": encode_jpeg(sample.image, jpeg_quality),
        "txt": sample.caption,
        "json": sample.metadata,
    }


def letterbox_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """Grey (H×W) or RGB (H×W×3) image, uint8 or float in [0, 1] → size×size×3 uint8.

    The aspect ratio is kept (black padding); downscaling averages areas (box filter), upscaling is bicubic.
    """
    if image.dtype != np.uint8:
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    pil = Image.fromarray(image)
    scale = size / max(pil.width, pil.height)
    new_size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
    if scale > 1:
        pil = pil.resize(new_size, Image.Resampling.BICUBIC)
    else:
        pil = pil.resize(new_size, Image.Resampling.BOX, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(pil.convert("RGB"), ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
    return np.asarray(canvas)


def content_key(prefix: str, relative: Path, frame: int | None = None) -> str:
    """Sample key ``<prefix>-<16 hex digits>[-f<frame>]`` from a hash of the input's relative path.

    Stable across runs, and folder and file names (often patient names) stay out of the key.
    """
    digest = hashlib.sha256(relative.as_posix().encode()).hexdigest()[:16]
    return f"{prefix}-{digest}" + (f"-f{frame:04d}" if frame is not None else "")


@dataclass
class SkippedInput:
    """An input that did not become a sample, and why."""

    source: str
    reason: str


def write_sample_shards(
    samples: Iterator[BiomedSample],
    skipped: list[SkippedInput],
    out_dir: str | Path,
    max_samples_per_shard: int = 10000,
    overwrite: bool = False,
    manifest_extra: Callable[[], dict[str, Any]] | None = None,
) -> Path:
    """Write samples into shards with the core ``ShardWriter``; skipped inputs go into the manifest.

    The manifest also gets a ``samples`` list with each sample's ``manifest_record`` (for samples that
    have one) and whatever ``manifest_extra()`` returns once every sample has been read (e.g. report ids
    that matched no file).

    Args:
        samples: The samples, usually a reader's generator.
        skipped: The list the reader appends its :class:`SkippedInput` records to while it walks.
        out_dir: Shard folder.
        max_samples_per_shard: Samples per shard (BIOMEDICA uses 10,000).
        overwrite: Replace existing shards in ``out_dir``.
        manifest_extra: Called after the last sample; its keys are added to the manifest.

    Returns:
        The manifest path.

    Raises:
        UserError: ``out_dir`` already holds shards and ``overwrite`` is false, or is not a folder.
    """
    from shared.shards import ShardWriter

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: the shard output folder is a file")
    try:
        writer = ShardWriter(out_dir, prefix="biomed", max_samples=max_samples_per_shard,
                             track_json_fields=TRACKED_FIELDS, concept_fields=CONCEPT_FIELDS,
                             overwrite=overwrite)  # fmt: skip
    except FileExistsError as error:
        raise UserError(f"{out_dir}: already holds shards ({error}); pass --overwrite true to replace them") from None
    records: list[dict[str, Any]] = []
    with writer:
        reported = 0
        for sample in samples:
            writer.write(biomedica_sample_dict(sample))
            if sample.manifest_record is not None:
                records.append(sample.manifest_record)
            # Skips are collected while the reader walks; hand them over as they appear.
            for item in skipped[reported:]:
                writer.skip(item.source, item.reason)
            reported = len(skipped)
        for item in skipped[reported:]:
            writer.skip(item.source, item.reason)
    manifest_path = out_dir / "manifest.json"
    extra = {"samples": records, **(manifest_extra() if manifest_extra else {})}
    if records or manifest_extra:
        # The core writer owns the manifest's schema; these sections are biomed's additions to it.
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest.update(extra)
        write_text_atomically(manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest_path
