"""Evaluating a trained run on a split (``domains.recsys.evaluate``'s work).

Full ranking over all items, excluding each user's known interactions (training, plus validation when
scoring test); Recall/Precision/NDCG at the requested cut-offs, written to ``<out_dir>/<split>_metrics.json``
(default ``<run>/eval/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domains.recsys.llmrec.training import NDCG_VARIANTS, TEST_EXCLUSIONS, evaluate_split, load_run
from shared.atomic_files import write_json_atomically
from shared.device import pick_device
from shared.user_errors import UserError

SPLITS = ("test", "val")


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
    test_excludes: str = "train+val"
    """Items left out of the test ranking: 'train+val' (every known interaction) or 'train' (training items
    only, as LLMRec's code does; for numbers set beside the paper's)."""
    batch_users: int = 1024
    """Users scored at once (memory: batch_users × n_items scores)."""
    device: str = "auto"
    """'auto' (CUDA when available) or a torch device."""
    out_dir: str | None = None
    """Folder for <split>_metrics.json (null: <run>/eval)."""


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate_run` computed and wrote.

    Attributes:
        metrics: ``recall@K``, ``precision@K``, ``ndcg@K`` per cut-off, plus ``ndcg_variant``.
        path: the written ``<split>_metrics.json``.
    """

    metrics: dict[str, Any]
    path: Path


def check_evaluate_config(config: EvaluateConfig) -> None:
    """Refuses settings that cannot work, naming the flag.

    Raises:
        UserError: an unknown split or NDCG variant, a cut-off below 1, or ``batch_users`` below 1.
    """
    if config.split not in SPLITS:
        raise UserError(f"--split: must be 'test' or 'val', got {config.split!r}")
    if config.ndcg_variant not in NDCG_VARIANTS:
        raise UserError(f"--ndcg_variant: must be one of {NDCG_VARIANTS}, got {config.ndcg_variant!r}")
    if config.test_excludes not in TEST_EXCLUSIONS:
        raise UserError(f"--test_excludes: must be one of {TEST_EXCLUSIONS}, got {config.test_excludes!r}")
    if not config.ks or min(config.ks) < 1:
        raise UserError(f"--ks: give one or more cut-offs >= 1, got {list(config.ks)}")
    if config.batch_users < 1:
        raise UserError(f"--batch_users: must be >= 1, got {config.batch_users}")


def evaluate_run(config: EvaluateConfig) -> Evaluation:
    """Scores the run ``config.run`` on ``config.split`` and writes ``<split>_metrics.json``.

    Raises:
        UserError: bad settings, or ``config.run`` is not a finished ``domains.recsys.train`` run.
    """
    check_evaluate_config(config)
    loaded = load_run(config.run, device=pick_device(config.device))
    metrics = evaluate_split(
        loaded.model,
        loaded.data,
        config.split,
        ks=tuple(config.ks),
        batch_users=config.batch_users,
        ndcg_variant=config.ndcg_variant,
        test_excludes=config.test_excludes,
    )
    metrics["test_excludes"] = config.test_excludes if config.split == "test" else "train"
    metrics["ndcg_variant"] = config.ndcg_variant
    out_dir = Path(config.out_dir) if config.out_dir else loaded.run_dir / "eval"
    path = write_json_atomically(out_dir / f"{config.split}_metrics.json", metrics)
    return Evaluation(metrics=metrics, path=path)
