"""Ingesting DICOM files (or ordinary images with captions) into BIOMEDICA-format shards with a manifest.

DICOM files (any suffix, searched recursively) go through the chain in :mod:`domains.biomed.dicom`;
ordinary images through :mod:`domains.biomed.image_folder`; shards are written by
:func:`domains.biomed.samples.write_sample_shards`. Files that are not DICOM, are truncated, have no
pixel data, an unsupported photometric interpretation or declared burned-in text are listed in the
manifest with the reason and the ingest continues, and so are report ids that name no file; if no input becomes a sample it says why (:class:`~shared.user_errors.NothingProduced`).
No patient-identifying header field reaches a caption, the metadata, the printed log or the manifest.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domains.biomed.caption_tables import read_captions_table, read_reports_csv
from domains.biomed.dicom import DicomChainConfig, DicomFolderNotes, read_dicom_folder
from domains.biomed.image_folder import read_image_caption_folder
from domains.biomed.samples import SkippedInput, write_sample_shards
from shared.run_folder import RunFolder
from shared.user_errors import NothingProduced, UserError

DOMAIN = "biomed"
COMMAND = "domains.biomed.ingest"


@dataclass
class IngestConfig:
    """Turn a folder of DICOM files (or images + a captions table) into BIOMEDICA-format webdataset shards."""

    input: str = ""
    """Folder to read (searched recursively for DICOM files; or the image root for --captions)."""
    reports: str = ""
    """Optional CSV mapping an id (relative path, with or without suffix, or file stem) to report text."""
    captions: str = ""
    """Ingest ordinary images instead: a CSV (filepath,title) or JSONL table of image paths and captions."""
    run_name: str = "ingest"
    """Name of the run folder this ingest creates: <runs_root>/biomed/<run_name> (shards in its shards/ unless --out_dir)."""
    runs_root: str = "runs"
    """Root folder of all run folders."""
    out_dir: str = ""
    """Shard folder; empty = <runs_root>/biomed/<run_name>/shards."""
    license: str = "unknown"
    """Licence recorded in every sample's article_license (e.g. CC-BY-4.0; 'unknown' counts as the 'other' subset)."""
    dicom: DicomChainConfig = field(default_factory=DicomChainConfig)
    """DICOM chain: image size, VOI, window index, frame policy, decoding plugin."""
    max_samples_per_shard: int = 10000
    """Samples per shard (BIOMEDICA uses 10,000)."""
    overwrite: bool = False
    """Replace existing shards in the output folder."""


@dataclass
class IngestResult:
    """What an ingest wrote."""

    run: RunFolder
    """The ingest's run folder (config.yaml and the run.json marker)."""
    out_dir: Path
    """The shard folder."""
    manifest: Path
    """The shard set's manifest (counts, and every skipped input with its reason)."""
    num_samples: int
    """Samples written."""
    skipped: list[SkippedInput]
    """Inputs that did not become a sample, with the reason."""
    unmatched_reports: list[str] = field(default_factory=list)
    """Report ids (--reports) that name no file in the input folder."""

    @property
    def skipped_reasons(self) -> str:
        """``"reason: count; …"`` over the skipped inputs, most frequent first."""
        return _count_reasons(self.skipped)


def _count_reasons(skipped: list[SkippedInput]) -> str:
    reasons = Counter(item.reason.split(" (")[0] for item in skipped)
    return "; ".join(f"{reason}: {n}" for reason, n in reasons.most_common())


def _check_ingest_config(config: IngestConfig) -> Path:
    """Refuse flags that cannot work, naming them; returns the input folder."""
    if not config.input:
        raise UserError("--input: required: a folder of DICOM files, or of images with --captions")
    source = Path(config.input)
    if not source.exists():
        raise UserError(f"--input {source}: no such folder")
    if not source.is_dir():
        raise UserError(f"--input {source}: is a file; give the folder that holds the DICOM files or images")
    if config.reports and config.captions:
        raise UserError("--reports and --captions: reports caption DICOM files, captions caption images; give one")
    if config.max_samples_per_shard < 1:
        raise UserError(f"--max_samples_per_shard: must be >= 1, got {config.max_samples_per_shard}")
    return source


def ingest_to_shards(config: IngestConfig) -> IngestResult:
    """Read ``config.input`` (DICOM files, or images listed in ``config.captions``) and write shards.

    The run folder ``<runs_root>/biomed/<run_name>`` gets the config and, at the very end, the marker
    (``run.json``, listing the manifest when the shards are inside the run folder).

    Raises:
        UserError: A missing or wrong ``--input``, ``--reports`` with ``--captions``, a bad table, a bad
            shard count, or an output folder that already holds shards (without ``overwrite``).
        NothingProduced: The folder holds no files, or no input became a sample (the manifest says why).
    """
    source = _check_ingest_config(config)
    # Tables are read (and refused) before anything is written.
    reports = read_reports_csv(config.reports) if config.reports else None
    if config.captions:
        read_captions_table(config.captions)
    if not any(path.is_file() for path in source.rglob("*")):
        raise NothingProduced(f"--input {source}: the folder holds no files")
    run = RunFolder.create(DOMAIN, config.run_name, config.runs_root)
    out_dir = Path(config.out_dir) if config.out_dir else run.path / "shards"
    run.save_config(config)
    skipped: list[SkippedInput] = []
    notes = DicomFolderNotes()
    manifest_extra = None
    if config.captions:
        samples = read_image_caption_folder(source, config.captions, config.dicom.image_size, config.license, skipped)
    else:
        samples = read_dicom_folder(source, config.dicom, reports, config.license, skipped, notes)

        def manifest_extra() -> dict[str, Any]:
            return {"unmatched_reports": notes.unmatched_reports,
                    "burned_in_annotation": {"included": config.dicom.include_burned_in,
                                             "skipped": notes.burned_in_skipped}}  # fmt: skip

    manifest = write_sample_shards(samples, skipped, out_dir, config.max_samples_per_shard, config.overwrite,
                                   manifest_extra)  # fmt: skip
    count = int(json.loads(manifest.read_text(encoding="utf-8")).get("num_samples", 0))
    if count == 0:
        what = "image listed in --captions" if config.captions else "file in --input"
        raise NothingProduced(
            f"no {what} became a sample ({len(skipped)} skipped: {_count_reasons(skipped)}); see {manifest}"
        )
    inside = out_dir.resolve().is_relative_to(run.path.resolve())
    outputs = ["config.yaml"] + ([str(manifest.resolve().relative_to(run.path.resolve()))] if inside else [])
    run.mark_finished(command=COMMAND, outputs=outputs,
                      summary={"samples": count, "skipped": len(skipped), "shards": str(out_dir)})  # fmt: skip
    return IngestResult(run, out_dir, manifest, count, skipped, notes.unmatched_reports)
