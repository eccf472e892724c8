"""Trimodal CLIP pretraining of AstroM3 (photometry, spectra, metadata) through the shared trainer.

    python -m domains.astro.pretrain                          # demo: built-in data, a few minutes on CPU
    python -m domains.astro.pretrain --config domains/astro/configs/paper.yaml --input runs/astro/<ingest>
    python -m domains.astro.pretrain --help                   # every option

Labels are not used. Training reads the ``train`` split of the chosen (subset, seed); validation computes
the CLIP loss and AstroM3's matching accuracy on ``val`` in training-size batches. The budget is in epochs
(``--trainer.max_epochs``, ``--trainer.warmup_epochs``; validation and checkpoints once per epoch), turned
into steps before the config is saved; for a budget in steps give ``--trainer.max_epochs null
--trainer.max_steps N``. Without ``--input`` the built-in demo set is ingested first (announced in one
line). Writes ``runs/astro/<run_name>/`` (``config.yaml``, ``metrics.csv``, ``checkpoints/``,
``model.safetensors``, ``eval/metrics.json``, ``run.json``); the work is done by
:mod:`domains.astro.clip_pretraining`.
"""

from __future__ import annotations

from domains.astro.clip_pretraining import PretrainConfig, PretrainResult, run_pretrain
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> PretrainResult:
    """Command-line entry point (``python -m domains.astro.pretrain --help``)."""
    config = parse_config(PretrainConfig, argv, prog="python -m domains.astro.pretrain", description=__doc__)
    result = run_pretrain(config)
    metrics = result.metrics
    print(
        f"pretraining stopped ({result.stop_reason}) after {int(metrics['steps'])} steps: "
        f"val CLIP loss {metrics['val_loss']:.3f}, matching accuracy {metrics['val_clip_accuracy']:.3f} "
        f"(test {metrics['test_clip_accuracy']:.3f})"
    )
    print(f"wrote {result.run_dir} (config.yaml, metrics.csv, checkpoints/, model.safetensors, eval/metrics.json)")
    print(
        f"next: python -m domains.astro.finetune --mode photo --run {result.run_dir} --seeds [{config.seed}]\n"
        f"      python -m domains.astro.embed --run {result.run_dir}"
    )
    return result


if __name__ == "__main__":
    run_command(main)
