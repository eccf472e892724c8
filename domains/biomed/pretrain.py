"""Contrastive (continual) pretraining of a biomedical CLIP on BIOMEDICA-format shards.

With no arguments this is the demo: it builds the built-in corpus, measures the untrained model, trains
the small demo model on 2 CPU cores in a few minutes, then evaluates, exports an open_clip ``local-dir:``
model and writes the embeddings to the store, printing one line before each of those steps with the
command that does it on its own::

    python -m domains.biomed.pretrain
    python -m domains.biomed.pretrain --config domains/biomed/configs/biomedclip.yaml   # paper recipe
    python -m domains.biomed.pretrain --config domains/biomed/configs/bmca.yaml         # BMCA continual
    python -m domains.biomed.pretrain --help

The work is :func:`domains.biomed.training.pretrain`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domains.biomed.training import DataConfig, ModelConfig, PretrainConfig, held_out_summary, pretrain
from shared.cli import parse_config, run_command

__all__ = ["DataConfig", "ModelConfig", "PretrainConfig", "main"]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point: ``python -m domains.biomed.pretrain --help``; returns the evaluation metrics."""
    config = parse_config(PretrainConfig, argv, prog="python -m domains.biomed.pretrain")
    result = pretrain(config)
    run_dir = result.run.path
    print(f"\nDone in {result.seconds / 60:.1f} min. Run folder: {run_dir}")
    print(f"  config:     {run_dir / 'config.yaml'}")
    print(f"  metrics:    {run_dir / 'metrics.csv'}")
    print(f"  weights:    {run_dir / 'model.safetensors'} (checkpoints in {run_dir / 'checkpoints'})")
    print(f"  evaluation: {run_dir / 'eval' / 'metrics.json'}")
    for line in held_out_summary(result.metrics):
        print(f"  {line}")
    if result.export_dir:
        print(f"  export:     {result.export_dir} (open_clip local-dir)")
    if result.stored:
        print(
            f"  store:      {config.store} ({result.stored} samples, image and text vectors, run id {result.run.run_id})"
        )
    print("Next:")
    print(
        f"  python -m domains.biomed.evaluate --run {run_dir} --input {result.validation_urls or '<held-out shards>'}"
    )
    if result.export_dir:
        print(
            f"  python -c \"import open_clip; m, _, p = open_clip.create_model_and_transforms('local-dir:{result.export_dir}')\""
        )
    print("  python -m domains.biomed.ingest --input <folder of DICOM files>   # bring your own data")
    print(f"  python -m domains.biomed.pretrain --run_name {config.run_name} --runs_root {config.runs_root} "
          "--trainer.resume latest --trainer.max_steps <more>")  # fmt: skip
    return result.metrics


if __name__ == "__main__":
    run_command(main)
