"""The controlled augmentation experiment: pool disjoint from every split, oracle triplets, nested noise, a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domains.recsys.llmrec.noisy_augmentation import (
    NoisyAugmentationConfig,
    check_experiment_config,
    inject_noise,
    oracle_triplets,
    split_with_pool,
)
from domains.recsys.noisy_augmentation import main
from shared.cli import run_command
from shared.user_errors import UserError


def _ratings(
    n_users: int = 30, n_items: int = 40, per_user: int = 20, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        for item in rng.choice(n_items, size=per_user, replace=False):
            rows.append((str(user + 1), str(item + 1), float(rng.integers(1, 6))))
    items = pd.DataFrame({"item_id": [str(i + 1) for i in range(n_items)]})
    items["title"] = items["text"] = "Movie " + items["item_id"]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]), items


def _pairs(array: np.ndarray) -> set[tuple[int, int]]:
    return {(int(user), int(item)) for user, item in array[:, :2]}


@pytest.mark.parametrize("seed", [0, 1])
def test_pool_is_disjoint_from_train_validation_and_test(seed: int) -> None:
    ratings, items = _ratings(seed=seed)
    split = split_with_pool(ratings, items, seed=seed, pool_share=0.25, positive_rating=4)
    data, pool = split.data, split.pool
    pool_pairs = _pairs(pool)
    for part in (data.train, data.val, data.test):
        assert not pool_pairs & _pairs(part), "a pool rating leaked into a split"
    assert len(pool_pairs) == len(pool), "each pool rating once"
    # every pool pair is a real rating with its own rating value; splits hold only positives
    lookup = {(data.user_index()[u], data.item_index()[i]): r for u, i, r in ratings.itertuples(index=False, name=None)}
    assert all(lookup[(int(u), int(i))] == r for u, i, r in pool)
    for part in (data.train, data.val, data.test):
        assert all(lookup[(int(u), int(i))] >= 4 for u, i in part)
    # per user, round(0.25 · n) of the user's 20 ratings are pooled (5), whatever their value
    per_user = np.bincount(pool[:, 0], minlength=data.n_users)
    assert set(per_user.tolist()) == {5}
    # rankings exclude the pool (known interactions) for every variant
    assert _pairs(data.held_out_known) == pool_pairs


def test_oracle_triplets_pair_liked_with_disliked_pool_items_of_the_same_user() -> None:
    pool = np.array([[0, 1, 5], [0, 2, 4], [0, 3, 1], [0, 4, 3], [1, 5, 5], [1, 6, 3], [2, 7, 2], [2, 8, 4]])
    triplets = oracle_triplets(pool, seed=0, positive_rating=4, negative_rating=2)
    assert sorted(map(tuple, triplets.tolist())) == [(0, 1, 3), (0, 2, 3), (2, 8, 7)]


def test_noise_is_nested_across_levels_and_flips_exactly_the_flagged_triplets() -> None:
    ratings, items = _ratings()
    data = split_with_pool(ratings, items, seed=0, pool_share=0.25, positive_rating=4).data
    triplets = np.array([(user % data.n_users, 2 * user % 40, (2 * user + 1) % 40) for user in range(40)])
    clean, none = inject_noise(triplets, 0.0, "flip", 0, data)
    assert not none.any() and np.array_equal(clean, triplets)
    quarter, quarter_flags = inject_noise(triplets, 0.25, "flip", 0, data)
    half, half_flags = inject_noise(triplets, 0.5, "flip", 0, data)
    assert quarter_flags.sum() == 10 and half_flags.sum() == 20
    assert np.all(half_flags[quarter_flags]), "the 25% noise is a subset of the 50% noise"
    np.testing.assert_array_equal(half[half_flags][:, [0, 2, 1]], triplets[half_flags])
    np.testing.assert_array_equal(half[~half_flags], triplets[~half_flags])
    noisy, flags = inject_noise(triplets, 0.5, "random", 0, data)
    known = _pairs(data.train)
    assert all((u, p) not in known and (u, n) not in known and p != n for u, p, n in noisy[flags])


def test_settings_that_cannot_work_are_refused() -> None:
    for overrides, flag in (
        ({"noise_levels": [0.0, 1.5]}, "--noise_levels"),
        ({"variants": ["lightgcn", "bogus"]}, "--variants"),
        ({"pool_share": 0.0}, "--pool_share"),
        ({"negative_rating": 4.0}, "--negative_rating"),
        ({"seeds": [1, 1]}, "--seeds"),
    ):
        with pytest.raises(UserError, match=flag):
            check_experiment_config(NoisyAugmentationConfig(**overrides))


def test_experiment_runs_every_level_and_logs_what_pruning_dropped(
    synthetic_recbole: Path, tmp_path: Path, capsys
) -> None:
    argv = [
        "--input",
        str(synthetic_recbole),
        "--runs_root",
        str(tmp_path / "runs"),
        "--run_name",
        "na",
        "--seeds",
        "[1, 2]",
        "--noise_levels",
        "[0.0, 0.5]",
        "--variants",
        "[lightgcn, +aug, +aug+prune]",
        "--pool_share",
        "0.4",
        "--positive_rating",
        "3",
        "--fit.batch_size",
        "64",
        "--fit.augmented_share",
        "0.5",
        "--trainer.max_epochs",
        "null",
        "--trainer.max_steps",
        "3",
        "--trainer.validate_every_epochs",
        "null",
        "--trainer.validate_every",
        "3",
    ]
    run_command(main, argv)
    folder = tmp_path / "runs" / "recsys" / "na"
    records = json.loads((folder / "noisy_augmentation.json").read_text())
    assert [record["seed"] for record in records] == [1, 2]
    for record in records:
        assert record["triplets"] > 0
        assert record["levels"]["0"]["lightgcn"] == record["levels"]["0.5"]["lightgcn"], "trained once, reused"
        clean, noisy = record["levels"]["0"]["+aug+prune"]["pruning"], record["levels"]["0.5"]["+aug+prune"]["pruning"]
        assert clean["noisy"] == 0 and clean["noise_share_of_dropped"] == 0.0
        assert noisy["noisy"] > 0 and 0.0 <= noisy["noise_share_of_dropped_augmented"] <= 1.0
    report = (folder / "noisy_augmentation.md").read_text()
    assert "augmentation helps when clean" in report and "noise share of dropped triplets" in report
    assert json.loads((folder / "run.json").read_text())["command"] == "domains.recsys.noisy_augmentation"
    assert "Wrote" in capsys.readouterr().out


def test_bad_flags_exit_with_one_line_naming_the_flag(tmp_path: Path, capsys) -> None:
    for argv, flag in (
        (["--noise_kind", "loud"], "--noise_kind"),
        (["--input", str(tmp_path / "missing")], "--input"),
        (["--trainer.seed", "3"], "--trainer.seed"),
    ):
        with pytest.raises(SystemExit) as raised:
            run_command(main, [*argv, "--runs_root", str(tmp_path / "runs")])
        assert raised.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and flag in err and "Traceback" not in err
