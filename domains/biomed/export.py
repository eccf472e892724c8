"""Export a trained model as an open_clip ``local-dir:`` folder.

    python -m domains.biomed.export --run runs/biomed/demo            # → runs/biomed/demo/export
    python -m domains.biomed.export --run runs/biomed/demo --out_dir /models/biomed-demo

Then ``open_clip.create_model_and_transforms("local-dir:<folder>")`` reproduces the suite's embeddings.
The work is :func:`domains.biomed.export_open_clip.export_model`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from domains.biomed.export_open_clip import ExportConfig, export_model
from shared.cli import parse_config, run_command

__all__ = ["ExportConfig", "main"]


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point: ``python -m domains.biomed.export --help``; returns the export folder."""
    config = parse_config(ExportConfig, argv, prog="python -m domains.biomed.export")
    path = export_model(config)
    print(f"Wrote open_clip local-dir model to {path}")
    print(f"Next: python -c \"import open_clip; open_clip.create_model_and_transforms('local-dir:{path}')\"")
    return path


if __name__ == "__main__":
    run_command(main)
