"""Export a trained model as an open_clip ``local-dir:`` folder.

    python -m domains.biomed.export --run runs/biomed/demo            # → runs/biomed/demo/export
    python -m domains.biomed.export --run runs/biomed/demo --out_dir /models/biomed-demo

Then ``open_clip.create_model_and_transforms("local-dir:<folder>")`` reproduces the suite's embeddings.
The work is :func:`domains.biomed.export_open_clip.export_local_dir`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from domains.biomed.export_open_clip import export_files, export_local_dir
from domains.biomed.model import load_trained_model
from shared.cli import parse_config, run_command


@dataclass
class ExportConfig:
    """Write an open_clip local-dir model from a pretrain run (or from any loadable open_clip model)."""

    run: str | None = None
    """Pretrain run folder to export (config.yaml + model.safetensors). Default: runs/biomed/demo unless --model is given."""
    model: str | None = None
    """Instead of --run: an open_clip model that is not a run folder: a preset, a JSON config, a hub-layout folder (local-dir:DIR) or hf-hub:org/repo."""
    out_dir: str = ""
    """Folder the export is written to (replaced if it exists); empty = <run>/export, or runs/biomed/export with --model."""


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point: ``python -m domains.biomed.export --help``; returns the export folder."""
    config = parse_config(ExportConfig, argv, prog="python -m domains.biomed.export")
    trained = load_trained_model(config.run, config.model)
    default = trained.run.path / "export" if trained.run else Path("runs/biomed/export")
    path = export_local_dir(trained.model, trained.loaded, Path(config.out_dir) if config.out_dir else default)
    if trained.run is not None and path.resolve().is_relative_to(trained.run.path.resolve()):
        trained.run.record_outputs(export_files(path.resolve(), trained.run.path.resolve()))
    print(f"Wrote open_clip local-dir model to {path}")
    print(f"Next: python -c \"import open_clip; open_clip.create_model_and_transforms('local-dir:{path}')\"")
    return path


if __name__ == "__main__":
    run_command(main)
