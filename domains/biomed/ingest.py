"""Ingest DICOM files (or ordinary images with captions) into BIOMEDICA-format shards with a manifest.

    python -m domains.biomed.ingest --input /data/dicom --reports reports.csv
    python -m domains.biomed.ingest --input /data/figures --captions captions.csv   # filepath,title
    python -m domains.biomed.ingest --help

Files that cannot become a sample are listed in the manifest with the reason and the run continues; if
no input becomes a sample the command says why and exits 1. The work is
:func:`domains.biomed.ingestion.ingest_to_shards`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from domains.biomed.ingestion import IngestConfig, ingest_to_shards
from shared.cli import parse_config, run_command

__all__ = ["IngestConfig", "main"]


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point: ``python -m domains.biomed.ingest --help``; returns the manifest path."""
    config = parse_config(IngestConfig, argv, prog="python -m domains.biomed.ingest")
    result = ingest_to_shards(config)
    print(f"Wrote {result.num_samples} samples to {result.out_dir} (manifest {result.manifest})")
    if result.skipped:
        print(f"Skipped {len(result.skipped)} input(s): {result.skipped_reasons}")
    if result.unmatched_reports:
        print(f"{len(result.unmatched_reports)} report(s) in --reports name no file (listed in the manifest)")
    print(
        f"Next: python -m domains.biomed.pretrain --data.train {result.out_dir} --run_name {config.run_name}-pretrain"
    )
    return result.manifest


if __name__ == "__main__":
    run_command(main)
