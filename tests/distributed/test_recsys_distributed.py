"""recsys under torchrun: LLMRec training (sparse graph buffers under DDP) and the MNAR real-data path.

Both draw each global batch from ``(seed, epoch, batch)`` alone, the same on every rank, and each rank trains on
its contiguous slice of it. LLMRec weights each slice's BPR/L2 terms by ``world_size / global count`` and decides
pruning on the all-gathered per-pair losses, so the ranks' mean gradient is the one-process gradient; MNAR's
per-sample mean losses over equal halves average to the one-process mean. What is left is float summation order.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

# The default model prunes (ω4 = 0.71) and trains the text-feature BPR term; MAE is switched on here so that its
# mask (rank 0's draw, broadcast) is covered too.
LLMREC = ["--augmentation", "none", "--trainer.max_epochs", "1", "--fit.batch_size", "8192",
          "--trainer.validate_every_epochs", "1", "--model.mae_mask_rate", "0.1", "--model.mae_loss_weight", "0.1"]  # fmt: skip
# Stated tolerances (float summation order only): LLMRec recall@20/ndcg@20 and losses within 1e-3; MNAR DCG/Recall
# within 1e-6 relative (measured: identical, 24 numbers, 20 steps, global batch 2048).
LLMREC_TOLERANCE = 1e-3
MNAR_RELATIVE_TOLERANCE = 1e-6


@pytest.mark.slow
def test_llmrec_two_processes_match_one(workdir: Path, dist: types.ModuleType) -> None:
    two = dist.launch("domains.recsys.train", [*LLMREC, "--run_name", "two"], workdir, 2)
    assert dist.printed_once(two.stdout, "test recall@20")
    one = dist.launch("domains.recsys.train", [*LLMREC, "--run_name", "one"], workdir, 1)
    runs = workdir / "runs" / "recsys"
    single, double = dist.eval_metrics(runs / "one"), dist.eval_metrics(runs / "two")
    dist.record("recsys train (LLMRec)", one_s=one.wall_seconds, two_s=two.wall_seconds, one=single, two=double)
    assert double["steps"] == single["steps"]
    for name in ("recall@20", "ndcg@20"):
        assert double["test"][name] == pytest.approx(single["test"][name], abs=LLMREC_TOLERANCE), name
    assert dist.train_losses(runs / "two") == pytest.approx(dist.train_losses(runs / "one"), abs=LLMREC_TOLERANCE)
    _check_embed_across_ranks(workdir, runs / "one", dist)


def _check_embed_across_ranks(workdir: Path, run_dir: Path, dist: types.ModuleType) -> None:
    """``domains.recsys.embed`` under torchrun writes each user/item vector once, equal to the one-process vectors."""
    import numpy as np

    from shared.store import EmbeddingStore

    vectors = {}
    for processes in (1, 2):
        store = workdir / f"store-{processes}.duckdb"
        done = dist.launch("domains.recsys.embed", ["--run", str(run_dir), "--store", str(store)], workdir, processes)
        assert dist.printed_once(done.stdout, "Wrote "), done.stdout
        opened = EmbeddingStore(store)
        try:
            rows = opened.sql(
                "SELECT sample_id, modality, vec FROM embeddings_64 WHERE domain = 'recsys' ORDER BY modality, sample_id"
            )
        finally:
            opened.close()
        assert not rows.duplicated(["sample_id", "modality"]).any()
        vectors[processes] = rows
    single, double = vectors[1], vectors[2]
    assert len(double) == len(single) > 0
    assert list(double["sample_id"]) == list(single["sample_id"])
    assert np.array_equal(np.stack(double["vec"].to_numpy()), np.stack(single["vec"].to_numpy()))


def _recbole_movielens() -> str:
    import recbole

    return str(Path(recbole.__file__).parent / "dataset_example" / "ml-100k" / "ml-100k.inter")


@pytest.mark.slow
def test_mnar_real_data_two_processes_match_one(workdir: Path, dist: types.ModuleType) -> None:
    common = ["--dataset", "recbole", "--input", _recbole_movielens(), "--estimators", "[naive, relmf]",
              "--seeds", "1", "--trainer.max_steps", "20", "--store", "runs/embeddings.duckdb"]  # fmt: skip
    # --real.batch_size is the global batch: each of the two ranks trains on its half of the same draw.
    two = dist.launch("domains.recsys.mnar", [*common, "--run_name", "two", "--real.batch_size", "2048"], workdir, 2)
    assert dist.printed_once(two.stdout, "[mnar] wrote")
    one = dist.launch("domains.recsys.mnar", [*common, "--run_name", "one", "--real.batch_size", "2048"], workdir, 1)
    runs = workdir / "runs" / "recsys"
    single, double = dist.eval_metrics(runs / "one"), dist.eval_metrics(runs / "two")
    dist.record("recsys mnar (real data)", one_s=one.wall_seconds, two_s=two.wall_seconds, one=single, two=double)
    compared = 0
    for path, value in _numbers(single):
        other = _lookup(double, path)
        if "dcg" in path[-1].lower() or "recall" in path[-1].lower():
            assert other == pytest.approx(value, rel=MNAR_RELATIVE_TOLERANCE), path
            compared += 1
    assert compared > 0


def _numbers(tree: object, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], float]]:
    if isinstance(tree, dict):
        return [item for key, value in tree.items() for item in _numbers(value, (*path, str(key)))]
    if isinstance(tree, int | float) and not isinstance(tree, bool):
        return [(path, float(tree))]
    return []


def _lookup(tree: object, path: tuple[str, ...]) -> float:
    for key in path:
        assert isinstance(tree, dict) and key in tree, path
        tree = tree[key]
    return float(tree)  # type: ignore[arg-type]
