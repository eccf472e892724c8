"""Fine-tune AstroM3 classifiers: one modality or all three, with or without CLIP initialisation.

    python -m domains.astro.finetune --mode photo                                    # from scratch, demo data
    python -m domains.astro.finetune --mode photo --run runs/astro/pretrain-demo
    python -m domains.astro.finetune --mode all --subset sub10 --seeds [42,66,0] \\
        --run 'runs/astro/pretrain-demo-seed{seed}'                                  # one CLIP run per split seed

Modes: ``photo`` / ``spectra`` / ``meta`` (that tower + a linear head on its raw features) and ``all``
(the three normalised projections averaged, then a linear head). With ``--run`` the encoders start from a
pretraining run (unimodal modes take only their tower; the architecture is the CLIP run's) and all
weights are trained. Label budgets: ``--subset full|sub50|sub25|sub10``. Model selection and early stopping
use validation accuracy only; the test split is touched once, at the end. The budget is in epochs
(``--trainer.max_epochs``), resolved per seed.

Writes ``runs/astro/<run_name>/config.yaml`` and per seed ``seed-<N>/`` (its resolved ``config.yaml``,
``metrics.csv``, ``checkpoints/``, ``model.safetensors``, ``classifier.json``, ``eval/metrics.json``,
``eval/confusion_matrix.png``), plus ``eval/summary.json`` (test accuracy over seeds: mean, standard
deviation, 95% interval); the work is done by :mod:`domains.astro.classifier_finetuning`.
"""

from __future__ import annotations

from domains.astro.classifier_evaluation import format_summary
from domains.astro.classifier_finetuning import FinetuneConfig, FinetuneResult, run_finetune
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> FinetuneResult:
    """Command-line entry point (``python -m domains.astro.finetune --help``)."""
    config = parse_config(FinetuneConfig, argv, prog="python -m domains.astro.finetune", description=__doc__)
    result = run_finetune(config)
    accuracy = result.summary["accuracy"]
    values = ", ".join(f"{v:.4f}" for v in accuracy["values"])
    print(
        f"{config.mode} ({'CLIP init' if config.run else 'no CLIP'}, {config.subset}) test accuracy "
        f"{format_summary(accuracy)} over seeds {config.seeds} [{values}]"
    )
    print(f"wrote {result.run_dir} (config.yaml, seed-*/ with model.safetensors and eval/, eval/summary.json)")
    print(f"next: python -m domains.astro.evaluate --run {result.run_dir}")
    return result


if __name__ == "__main__":
    run_command(main)
