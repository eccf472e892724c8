"""news train under torchrun from a fresh folder: rank 0 builds the built-in shards and the feature cache.

Before the fix both ranks wrote the built-in shards at once (``shard-000000.tar.partial -> …tar``
FileNotFoundError). Every rank holds every post's features; the core's batches split each global batch.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

SETTINGS = ["--trainer.max_steps", "8", "--trainer.validate_every", "4", "--encoders.aligned_steps", "8"]
# Stated tolerance: test ROC-AUC and accuracy within 0.05 of the one-process run (the head's dropout draws
# differ per rank).
TOLERANCE = 0.05


@pytest.mark.slow
def test_two_processes_build_the_built_in_set_once_and_match_one(workdir: Path, dist: types.ModuleType) -> None:
    two = dist.launch("domains.news.train", [*SETTINGS, "--run_name", "two", "--batch_size", "32"], workdir, 2)
    assert dist.printed_once(two.stdout, "runs/news/shards-builtin: no shards yet")
    one = dist.launch("domains.news.train", [*SETTINGS, "--run_name", "one", "--batch_size", "64"], workdir, 1)
    runs = workdir / "runs" / "news"
    single, double = dist.eval_metrics(runs / "one"), dist.eval_metrics(runs / "two")
    dist.record("news train", one_s=one.wall_seconds, two_s=two.wall_seconds, one=single, two=double)
    assert double["steps"] == single["steps"] == 8
    assert double["split_sizes"] == single["split_sizes"]
    for name in ("roc_auc", "accuracy"):
        assert double[name] == pytest.approx(single[name], abs=TOLERANCE), name
