"""Ingest DICOM files (or ordinary images with captions) into BIOMEDICA-format shards with a manifest.

    python -m domains.biomed.ingest --input /data/dicom --reports reports.csv
    python -m domains.biomed.ingest --input /data/figures --captions captions.csv   # filepath,title
    python -m domains.biomed.ingest --help

DICOM files (any suffix, searched recursively) go through the chain in ``domains.biomed.data``; files
that are not DICOM, are truncated, have no pixel data or an unsupported photometric interpretation are
listed in the manifest with the reason and the run continues. No patient-identifying header field
reaches a caption, the metadata, the printed log or the manifest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from domains.biomed.data import (
    BiomedSample,
    DicomChainConfig,
    SkippedInput,
    biomedica_sample_dict,
    read_captions_table,
    read_dicom_folder,
    read_image_caption_folder,
    read_reports_csv,
)

DOMAIN = "biomed"
TRACKED_FIELDS = ("article_license", "image_panel_type", "image_set", "caption_source", "image_secondary_label")
CONCEPT_FIELDS = ("image_primary_label",)


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
    """Run folder name under runs/biomed/ (shards go to <run>/shards unless --out_dir is given)."""
    out_dir: str = ""
    """Shard folder; empty = runs/biomed/<run_name>/shards."""
    license: str = "unknown"
    """Licence recorded in every sample's article_license (e.g. CC-BY-4.0; 'unknown' counts as the 'other' subset)."""
    dicom: DicomChainConfig = field(default_factory=DicomChainConfig)
    """DICOM chain: image size, VOI, window index, frame policy, decoding plugin."""
    max_samples_per_shard: int = 10000
    """Samples per shard (BIOMEDICA uses 10,000)."""
    overwrite: bool = False
    """Replace existing shards in the output folder."""


def ingest_samples(samples: Iterator[BiomedSample], skipped: list[SkippedInput], out_dir: str | Path,
                   max_samples_per_shard: int = 10000, overwrite: bool = False) -> Path:  # fmt: skip
    """Write samples into shards with the core ``ShardWriter``; skipped inputs go into the manifest.

    Returns:
        The manifest path.
    """
    from shared.shards import ShardWriter

    out_dir = Path(out_dir)
    with ShardWriter(out_dir, prefix="biomed", max_samples=max_samples_per_shard, track_json_fields=TRACKED_FIELDS,
                     concept_fields=CONCEPT_FIELDS, overwrite=overwrite) as writer:  # fmt: skip
        reported = 0
        for sample in samples:
            writer.write(biomedica_sample_dict(sample))
            # Skips are collected while the reader walks; hand them over as they appear.
            for item in skipped[reported:]:
                writer.skip(item.source, item.reason)
            reported = len(skipped)
        for item in skipped[reported:]:
            writer.skip(item.source, item.reason)
    return out_dir / "manifest.json"


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point: ``python -m domains.biomed.ingest --help``."""
    from shared.cli import parse_config, run_dir_for, save_config

    config = parse_config(IngestConfig, argv, prog="python -m domains.biomed.ingest")
    if not config.input:
        raise SystemExit("--input is required: a folder of DICOM files, or of images with --captions")
    source = Path(config.input)
    if not source.is_dir():
        raise SystemExit(f"{source}: input folder not found")
    run_dir = run_dir_for(DOMAIN, config.run_name)
    save_config(config, run_dir)
    out_dir = Path(config.out_dir) if config.out_dir else run_dir / "shards"
    skipped: list[SkippedInput] = []
    if config.captions:
        read_captions_table(config.captions)  # fail early on a malformed table, before any shard is written
        samples = read_image_caption_folder(source, config.captions, config.dicom.image_size, config.license, skipped)
    else:
        reports = read_reports_csv(config.reports) if config.reports else None
        samples = read_dicom_folder(source, config.dicom, reports, config.license, skipped)
    manifest = ingest_samples(samples, skipped, out_dir, config.max_samples_per_shard, config.overwrite)
    import json

    summary = json.loads(manifest.read_text(encoding="utf-8"))
    print(f"Wrote {summary.get('num_samples', 0)} samples to {out_dir} (manifest {manifest})")
    if skipped:
        reasons = Counter(item.reason.split(" (")[0] for item in skipped)
        print(f"Skipped {len(skipped)} input(s): " + "; ".join(f"{reason}: {n}" for reason, n in reasons.most_common()))
    print(f"Next: python -m domains.biomed.pretrain --data.train {out_dir} --run_name {config.run_name}-pretrain")
    return manifest


if __name__ == "__main__":
    main()
