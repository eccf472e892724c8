"""Evaluate a biomedical CLIP on a shard set: image–text retrieval R@K and zero-shot classification.

    python -m domains.biomed.evaluate --run runs/biomed/demo --input runs/biomed/demo_corpus/test
    python -m domains.biomed.evaluate --model hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 \
        --input data/pcam/test --zero_shot pcam

A pretrain run (``--run``) gets the result in its own ``eval/metrics.json``; a model given by spec
(``--model``) gets a run folder of its own (``runs/biomed/<run_name>``). The work is
:func:`domains.biomed.evaluation.evaluate_and_record`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from domains.biomed.evaluation import EvaluateConfig, evaluate_and_record
from shared.cli import parse_config, run_command

__all__ = ["EvaluateConfig", "main"]


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point: ``python -m domains.biomed.evaluate --help``; returns the metrics file."""
    config = parse_config(EvaluateConfig, argv, prog="python -m domains.biomed.evaluate")
    result = evaluate_and_record(config)
    metrics, retrieval = result.metrics, result.metrics["retrieval"]
    print(f"image→text R@1 {retrieval['image_to_text_R@1']:.3f}, text→image R@1 {retrieval['text_to_image_R@1']:.3f}"
          + (f", zero-shot top-1 {metrics['zero_shot']['top1']:.3f}" if "zero_shot" in metrics else ""))  # fmt: skip
    print(f"Wrote {result.path}")
    print(f"Next: python -m domains.biomed.embed {result.model_flag} --input {config.input}")
    return result.path


if __name__ == "__main__":
    run_command(main)
