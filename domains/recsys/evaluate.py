"""Evaluate a trained recommender: ``python -m domains.recsys.evaluate --run runs/recsys/demo``.

Full ranking over all items, excluding each user's known interactions (training, plus validation when
scoring test); Recall/Precision/NDCG at the requested cut-offs. Writes ``<out_dir>/<split>_metrics.json``
(default ``<run>/eval/``). The work is :func:`domains.recsys.llmrec.evaluation.evaluate_run`.
"""

from __future__ import annotations

from domains.recsys.llmrec.evaluation import EvaluateConfig, evaluate_run
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(EvaluateConfig, argv, prog="python -m domains.recsys.evaluate")
    evaluation = evaluate_run(config)
    metrics = evaluation.metrics
    for k in config.ks:
        print(
            f"@{k}: recall {metrics[f'recall@{k}']:.4f}  ndcg {metrics[f'ndcg@{k}']:.4f}  "
            f"precision {metrics[f'precision@{k}']:.4f}"
        )
    print(f"Wrote {evaluation.path}")
    print(f"Next: python -m domains.recsys.recommend --run {config.run} --users '[1, 2, 3]'")


if __name__ == "__main__":
    run_command(main)
