"""Evaluate a biomedical CLIP on a shard set: image–text retrieval R@K and zero-shot classification.

    python -m domains.biomed.evaluate --run runs/biomed/demo --input runs/biomed/demo_corpus/test
    python -m domains.biomed.evaluate --model hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 \
        --input data/pcam/test --zero_shot pcam

A pretrain run (``--run``) gets the result in its own ``eval/metrics.json``; a model given by spec
(``--model``) gets a run folder of its own (``runs/biomed/<run_name>``). The work is
:func:`domains.biomed.evaluation.evaluate_model`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from domains.biomed.evaluation import evaluate_model, headline_metrics, zero_shot_settings
from domains.biomed.model import load_trained_model
from shared.cli import parse_config, run_command
from shared.run_folder import RunFolder

COMMAND = "domains.biomed.evaluate"


@dataclass
class EvaluateConfig:
    """Evaluate a model on a shard set: image–text retrieval and zero-shot classification."""

    run: str | None = None
    """Pretrain run folder to evaluate (config.yaml + model.safetensors); the metrics go to its eval/metrics.json. Default: runs/biomed/demo unless --model is given."""
    model: str | None = None
    """Instead of --run: an open_clip model that is not a run folder: a preset (demo, tiny, biomedclip), a JSON config, an exported or hub-layout folder (local-dir:DIR) or hf-hub:org/repo."""
    input: str = "runs/biomed/demo_corpus/test"
    """Held-out shard set in the BIOMEDICA layout: a folder, a brace pattern or a URL (join sources with '::')."""
    run_name: str = "evaluate"
    """With --model only: name of the run folder that receives the metrics (<runs_root>/biomed/<run_name>)."""
    runs_root: str = "runs"
    """With --model only: root folder of all run folders."""
    batch_size: int = 64
    """Samples per encoding batch."""
    ks: list[int] = field(default_factory=lambda: [1, 5, 10])
    """K values of Recall@K."""
    zero_shot: str = "demo"
    """Zero-shot preset (pcam, rsna, demo), 'custom' to use the fields below, or 'none'."""
    label_field: str = ""
    """Custom zero-shot: dotted path of the label in each sample's JSON."""
    classnames: dict[str, str] = field(default_factory=dict)
    """Custom zero-shot: label value → class name used in the prompts."""
    templates: list[str] = field(default_factory=list)
    """Custom zero-shot: prompt templates with a '{}' slot."""
    device: str = "auto"
    """cpu, cuda or auto."""


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point: ``python -m domains.biomed.evaluate --help``; returns the metrics file."""
    from shared.device import pick_device
    from shared.user_errors import UserError

    config = parse_config(EvaluateConfig, argv, prog="python -m domains.biomed.evaluate")
    if config.batch_size < 1:
        raise UserError(f"--batch_size: must be >= 1, got {config.batch_size}")
    zero_shot = zero_shot_settings(config.zero_shot, config.label_field, config.classnames, config.templates)
    device = pick_device(config.device)
    trained = load_trained_model(config.run, config.model, device)
    metrics = evaluate_model(trained.model, trained.loaded, config.input, config.batch_size, config.ks, zero_shot,
                             device, flag="--input")  # fmt: skip
    metrics.update({"model": str(trained.run.path) if trained.run else trained.source, "shards": config.input})
    if trained.run is not None:
        path = trained.run.write_eval_metrics(metrics)
        trained.run.record_outputs([str(path.relative_to(trained.run.path))])  # its run.json lists the new file
    else:
        run = RunFolder.create("biomed", config.run_name, config.runs_root)
        run.save_config(config)
        path = run.write_eval_metrics(metrics)
        run.mark_finished(command=COMMAND, outputs=["config.yaml", str(path.relative_to(run.path))],
                          summary=headline_metrics(metrics))  # fmt: skip
    retrieval = metrics["retrieval"]
    print(f"image→text R@1 {retrieval['image_to_text_R@1']:.3f}, text→image R@1 {retrieval['text_to_image_R@1']:.3f}"
          + (f", zero-shot top-1 {metrics['zero_shot']['top1']:.3f}" if "zero_shot" in metrics else ""))  # fmt: skip
    print(f"Wrote {path}")
    which = f"--run {trained.run.path}" if trained.run else f"--model {config.model}"
    print(f"Next: python -m domains.biomed.embed {which} --input {config.input}")
    return path


if __name__ == "__main__":
    run_command(main)
