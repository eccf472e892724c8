"""Evaluate a trained recommender: ``python -m domains.recsys.evaluate --run runs/recsys/demo``.

Full ranking over all items, excluding each user's known interactions (training, plus validation when
scoring test); Recall/Precision/NDCG at the requested cut-offs. Writes ``<out_dir>/<split>_metrics.json``
(default ``<run>/eval/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from domains.recsys.llmrec.training import NDCG_VARIANTS, evaluate_split, load_run
from shared.atomic_files import write_json_atomically
from shared.cli import parse_config, run_command
from shared.device import pick_device
from shared.user_errors import UserError


@dataclass
class EvaluateConfig:
    """Full-ranking evaluation of a trained run."""

    run: str = "runs/recsys/demo"
    """Run folder written by domains.recsys.train."""
    split: str = "test"
    """'test' or 'val'."""
    ks: list[int] = field(default_factory=lambda: [10, 20, 50])
    """Cut-offs K."""
    ndcg_variant: str = "standard"
    """'standard' NDCG, or 'llmrec' (ideal DCG from the retrieved hits, as in LLMRec's code; reads high)."""
    batch_users: int = 1024
    """Users scored at once (memory: batch_users × n_items scores)."""
    device: str = "auto"
    """'auto' (CUDA when available) or a torch device."""
    out_dir: str | None = None
    """Folder for <split>_metrics.json (null: <run>/eval)."""


def _check(config: EvaluateConfig) -> None:
    if config.split not in ("test", "val"):
        raise UserError(f"--split: must be 'test' or 'val', got {config.split!r}")
    if config.ndcg_variant not in NDCG_VARIANTS:
        raise UserError(f"--ndcg_variant: must be one of {NDCG_VARIANTS}, got {config.ndcg_variant!r}")
    if not config.ks or min(config.ks) < 1:
        raise UserError(f"--ks: give one or more cut-offs >= 1, got {list(config.ks)}")
    if config.batch_users < 1:
        raise UserError(f"--batch_users: must be >= 1, got {config.batch_users}")


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(EvaluateConfig, argv, prog="python -m domains.recsys.evaluate")
    _check(config)
    loaded = load_run(config.run, device=pick_device(config.device))
    metrics = evaluate_split(
        loaded.model,
        loaded.data,
        config.split,
        ks=tuple(config.ks),
        batch_users=config.batch_users,
        ndcg_variant=config.ndcg_variant,
    )
    metrics["ndcg_variant"] = config.ndcg_variant
    out_dir = Path(config.out_dir) if config.out_dir else loaded.run_dir / "eval"
    out = write_json_atomically(out_dir / f"{config.split}_metrics.json", metrics)
    for k in config.ks:
        print(
            f"@{k}: recall {metrics[f'recall@{k}']:.4f}  ndcg {metrics[f'ndcg@{k}']:.4f}  "
            f"precision {metrics[f'precision@{k}']:.4f}"
        )
    print(f"Wrote {out}")
    print(f"Next: python -m domains.recsys.recommend --run {config.run} --users '[1, 2, 3]'")


if __name__ == "__main__":
    run_command(main)
