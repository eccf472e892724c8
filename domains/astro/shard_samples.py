"""One ingested object and its webdataset sample: what ``domains.astro.ingest`` writes into shards and
what the datasets read back (through the core's :class:`~shared.shard_stream.ShardStream`, which checks the
manifest and skips and counts corrupt samples).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from domains.astro.input_errors import AstroInputError, MissingAstroFolderError
from shared.shard_stream import ShardStream, TooManyFailuresError
from shared.shards import ManifestError


@dataclass
class IngestedObject:
    """One object after ingest, before split-dependent scaling and windowing.

    Attributes:
        sample_id: Stable id (the Gaia EDR3 source id as a string).
        label: Class name (e.g. ``"RRAB"``).
        photometry: ``(N, 3)`` float32: time scaled to [0, 1], MAD-normalized flux and flux error.
        log10_mad_flux: log10 of the flux MAD (flux in mJy) used for the normalization.
        delta_t_years: Time span of the light curve in years.
        spectrum: ``(3, 2575)`` float32 preprocessed spectrum (see ``preprocessing.prepare_spectrum``).
        features: ``(38,)`` float64 transformed, not yet standardized :data:`ALL_COLUMNS`.
    """

    sample_id: str
    label: str
    photometry: np.ndarray
    log10_mad_flux: float
    delta_t_years: float
    spectrum: np.ndarray
    features: np.ndarray


def encode_shard_sample(obj: IngestedObject, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Webdataset sample (for ``shared.shards.ShardWriter.write``) holding one ingested object."""
    info = {
        "sample_id": obj.sample_id,
        "label": obj.label,
        "log10_mad_flux": float(obj.log10_mad_flux),
        "delta_t_years": float(obj.delta_t_years),
        **dict(extra or {}),
    }
    return {
        "__key__": obj.sample_id,
        "photometry.npy": np.ascontiguousarray(obj.photometry, dtype=np.float32),
        "spectra.npy": np.ascontiguousarray(obj.spectrum, dtype=np.float32),
        "features.npy": np.ascontiguousarray(obj.features, dtype=np.float64),
        "json": info,
    }


def decode_shard_sample(raw: Mapping[str, Any]) -> IngestedObject:
    """Inverse of :func:`encode_shard_sample` for a raw webdataset sample (values are bytes)."""

    def array(key: str) -> np.ndarray:
        value = raw[key]
        return value if isinstance(value, np.ndarray) else np.load(io.BytesIO(value), allow_pickle=False)

    info = raw["json"]
    if isinstance(info, (bytes, bytearray, str)):
        info = json.loads(info)
    return IngestedObject(
        sample_id=str(info["sample_id"]),
        label=str(info["label"]),
        photometry=array("photometry.npy"),
        log10_mad_flux=float(info["log10_mad_flux"]),
        delta_t_years=float(info["delta_t_years"]),
        spectrum=array("spectra.npy"),
        features=array("features.npy"),
    )


def _stream_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A raw sample as collatable fields (the stream batches dicts of arrays, numbers and strings)."""
    obj = decode_shard_sample(raw)
    return {
        "shard": str(raw["__url__"]),
        "sample_id": obj.sample_id,
        "label": obj.label,
        "photometry": obj.photometry,
        "log10_mad_flux": obj.log10_mad_flux,
        "delta_t_years": obj.delta_t_years,
        "spectrum": obj.spectrum,
        "features": obj.features,
    }


def read_ingested_objects(shard_dir: str | Path) -> list[IngestedObject]:
    """Read every object from the shards an ingest wrote (in shard and write order).

    The shards are read through :class:`~shared.shard_stream.ShardStream`: the folder's ``manifest.json``
    lists them, and a corrupt sample or a truncated shard is skipped, counted and reported in one line.

    Raises:
        MissingAstroFolderError: ``shard_dir`` is not a folder.
        AstroInputError: no shards, a bad manifest, too many corrupt samples, or no readable object.
    """
    shard_dir = Path(shard_dir)
    if not shard_dir.is_dir():
        raise MissingAstroFolderError(f"{shard_dir}: no such shard folder (run `python -m domains.astro.ingest` first)")
    stream_logger = logging.getLogger(ShardStream.__module__)
    level = stream_logger.level
    stream_logger.setLevel(logging.ERROR)  # the stream's per-sample warnings are summarised in one line below
    try:
        # Every rank loads every object (node_split="none"): the trainer's batches split them between ranks.
        stream = ShardStream(str(shard_dir), _stream_fields, batch_size=1, shuffle_buffer=1, node_split="none")
        batches = list(stream.batches(epoch=0))
    except (FileNotFoundError, ManifestError, TooManyFailuresError) as error:
        raise AstroInputError(shard_dir, f"unreadable shards ({error}); run `python -m domains.astro.ingest`") from None
    finally:
        stream_logger.setLevel(level)
    shard_order = {url: position for position, url in enumerate(stream.shard_urls)}
    # The stream visits shards in a seeded order; put them back in the order the ingest wrote them.
    batches.sort(key=lambda batch: shard_order.get(batch["shard"][0], len(shard_order)))
    objects = [
        IngestedObject(
            sample_id=batch["sample_id"][0],
            label=batch["label"][0],
            photometry=batch["photometry"][0].numpy(),
            log10_mad_flux=float(batch["log10_mad_flux"][0]),
            delta_t_years=float(batch["delta_t_years"][0]),
            spectrum=batch["spectrum"][0].numpy(),
            features=batch["features"][0].numpy(),
        )
        for batch in batches
    ]
    report = stream.report()
    failed = report["samples_failed"] + report["shards_failed"]
    if failed:
        reasons = ", ".join(f"{count} {reason}" for reason, count in report["failures_by_reason"].items())
        print(f"{shard_dir}: skipped {failed} unreadable sample(s) or shard(s) ({reasons})", flush=True)
    if not objects:
        raise AstroInputError(shard_dir, "the shards hold no readable object")
    return objects
