"""Train a recommender: ``python -m domains.recsys.train``.

With no arguments this runs the MovieLens-100K demo end to end on CPU: a plain LightGCN base model
(``runs/recsys/demo/base``), its top-10 candidates per user, augmentation by the offline knowledge-graph
backend (KG-overlap ``pos::neg`` edges and director/country/language attributes), then the LLMRec-style model
with side features and the augmented edges (``runs/recsys/demo``). Both are selected on validation and
evaluated once on test.

Other uses: ``--augmentation none`` (no augmentation), ``--augmentation <folder>`` (edges/attributes/profiles
written by ``domains.recsys.augment``), ``--input <folder>`` (RecBole atomic files or LLMRec layout). The
budget is ``--trainer.max_epochs`` (default) or ``--trainer.max_steps N --trainer.max_epochs null``.
"""

from __future__ import annotations

from domains.recsys.llmrec.pipeline import TrainConfig, run_training
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(TrainConfig, argv, prog="python -m domains.recsys.train")
    run, _ = run_training(config)
    print(f"Wrote {run.path} (model.safetensors, metrics.csv, eval/metrics.json, run.json)")
    print(f"Next: python -m domains.recsys.recommend --run {run.path} --users '[1, 2, 3]'")


if __name__ == "__main__":
    run_command(main)
