"""Unbiased learning from missing-not-at-random implicit feedback (Rel-MF and baselines): one command.

With no arguments it runs the semi-synthetic MovieLens-100K protocol of Saito et al. (WSDM 2020): for each
exposure power p it trains the oracle, naive and Rel-MF (plain and clipped) models over several seeds and
reports their test log loss relative to the oracle. With ``--dataset yahoo_r3|coat|click_log|recbole`` and
``--input`` it trains the selected estimators on a real biased log (one core-trainer fit per estimator and
seed; ``--trainer.resume latest`` continues an interrupted run) and reports DCG/Recall/MAP@K on the
missing-at-random test set (all items and rare items), plus IPS/SNIPS estimates on a held-out part of the
biased log.

Writes ``runs/recsys/<run-name>/``: ``config.yaml``, ``metrics.csv``, ``results.md``, ``results.json``,
``eval/metrics.json``, the fits' folders and ``run.json``; user and item embeddings of the first seed's
models go to the DuckDB embedding store (``--store``).

    python -m domains.recsys.mnar
    python -m domains.recsys.mnar --config domains/recsys/configs/mnar_coat.yaml --input /path/to/coat
"""

from __future__ import annotations

from typing import Any

from domains.recsys.mnar.config import MnarConfig
from domains.recsys.mnar.experiment import run_experiment
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the command line, run the experiment and say what was written; returns ``eval/metrics.json``."""
    config = parse_config(MnarConfig, argv, prog="python -m domains.recsys.mnar", description=__doc__)
    run = run_experiment(config)
    print(run.markdown)
    print(f"[mnar] wrote {run.folder.path}/: {', '.join(run.outputs[:5])} and {len(run.outputs) - 5} model file(s)")
    if run.config.store:
        print(
            f"[mnar] embeddings in {run.config.store}; browse them with the explorer (apps/) or SQL on all_embeddings"
        )
    print(
        f"[mnar] next: compare estimators in {run.folder.path}/results.md, or rerun with --config {run.folder.config_path}"
    )
    return run.summary


if __name__ == "__main__":
    run_command(main)
