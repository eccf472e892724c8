"""The semi-synthetic MNAR world written as a logged click log, so the real-data path can run on it.

The training log is what a logging policy with known exposure probabilities would record: one row per
exposed pair (``O = 1``) with ``click = R`` and ``propensity`` = the generator's true exposure probability
θ_ui (a logged propensity, per pair, not an item-popularity estimate). The test log is missing-at-random:
for every user, ``test_items_per_user`` items drawn uniformly from the items the user did not click, with
the true relevance ``R`` as the label (the Yahoo! R3 design: a random survey of songs per user).

Both are click-log CSV files (``user,item,click[,propensity]``) read by
:func:`domains.recsys.mnar.data.read_click_log`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from domains.recsys.mnar.data import read_movielens_100k_ratings
from domains.recsys.mnar.semi_synthetic import GeneratorSettings, SemiSyntheticWorld, build_semi_synthetic_world
from shared.atomic_files import atomic_output
from shared.user_errors import UserError

TRAIN_FILE = "train.csv"
TEST_FILE = "test.csv"


@dataclass
class SemiSyntheticLog:
    """What :func:`write_semi_synthetic_click_log` wrote.

    Attributes:
        train_path: the biased log (exposed pairs with clicks and true propensities).
        test_path: the missing-at-random test log.
        exposures: rows of the training log.
        clicks: clicks in the training log.
        test_rows: rows of the test log.
        test_relevant_rate: share of relevant test rows.
    """

    train_path: Path
    test_path: Path
    exposures: int
    clicks: int
    test_rows: int
    test_relevant_rate: float


def semi_synthetic_click_tables(
    world: SemiSyntheticWorld, power: float, test_items_per_user: int = 10, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training log (exposed pairs) and the MAR test log of exposure power ``p`` as data frames.

    Args:
        world: the ground truth (γ, exposure logits, sampled R and exposure uniforms).
        power: exposure power p (θ = σ(z)^p).
        test_items_per_user: random unclicked items per user in the test log.
        seed: seed of the test items' draw.
    """
    if test_items_per_user < 1:
        raise ValueError(f"test_items_per_user must be >= 1, got {test_items_per_user}")
    theta, exposure, clicks = world.sample(power)
    users, items = np.nonzero(exposure)
    train = pd.DataFrame(
        {"user": users, "item": items, "click": clicks[users, items].astype(np.int8), "propensity": theta[users, items]}
    )
    rng = np.random.default_rng(seed)
    test_users, test_items = [], []
    for user in range(world.shape[0]):
        candidates = np.flatnonzero(clicks[user] == 0)
        chosen = rng.choice(candidates, size=min(test_items_per_user, candidates.size), replace=False)
        test_users.append(np.full(chosen.size, user))
        test_items.append(np.sort(chosen))
    test_u, test_i = np.concatenate(test_users), np.concatenate(test_items)
    test = pd.DataFrame({"user": test_u, "item": test_i, "click": world.relevance[test_u, test_i].astype(np.int8)})
    return train, test


def write_semi_synthetic_click_log(
    world: SemiSyntheticWorld, power: float, out_dir: str | Path, test_items_per_user: int = 10, seed: int = 0
) -> SemiSyntheticLog:
    """Write ``train.csv`` and ``test.csv`` of exposure power ``p`` into ``out_dir`` (atomically).

    Args mirror :func:`semi_synthetic_click_tables`.
    """
    train, test = semi_synthetic_click_tables(world, power, test_items_per_user, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for frame, name in ((train, TRAIN_FILE), (test, TEST_FILE)):
        with atomic_output(out / name, ".csv") as temporary:
            frame.to_csv(temporary, index=False, float_format="%.6g")
    return SemiSyntheticLog(
        out / TRAIN_FILE,
        out / TEST_FILE,
        exposures=len(train),
        clicks=int(train["click"].sum()),
        test_rows=len(test),
        test_relevant_rate=float(test["click"].mean()),
    )


@dataclass
class SemiSyntheticLogConfig:
    """Write the semi-synthetic ML-100K world of one exposure power as a click log with logged propensities."""

    out_dir: str | None = None
    """Folder for train.csv, test.csv and the generator fits (generator/); required."""
    power: float = 1.0
    """Exposure power p in θ = σ(z)^p (larger = stronger MNAR; p = 1: about 100k exposures, 17k clicks)."""
    test_items_per_user: int = 10
    """Random unclicked items per user in the missing-at-random test log (Yahoo! R3 surveyed 10 songs)."""
    test_seed: int = 0
    """Seed of the test items' draw."""
    epsilon: float = 5.0
    """ε in γ = σ(clip(R̂, 1, 5) − ε)."""
    generator_dim: int = 20
    """Latent dimension of the generator MFs."""
    generator_iterations: int = 300
    """Adam steps of each generator fit."""
    generator_batch_size: int = 256
    """Pairs per generator step."""
    generator_lr: float = 0.01
    """Adam learning rate of the generator fits."""
    generator_seed: int = 12345
    """Seed of the generator fits and of sampling R and O."""


def write_semi_synthetic_log(config: SemiSyntheticLogConfig) -> SemiSyntheticLog:
    """Check ``config``, fit the generator on MovieLens-100K and write the log of ``config.power``.

    Raises:
        UserError: a flag is missing or out of range (the message names it).
    """
    if not config.out_dir:
        raise UserError("--out_dir: give the folder to write train.csv and test.csv into")
    if Path(config.out_dir).is_file():
        raise UserError(f"--out_dir: {config.out_dir} is a file, expected a folder")
    if config.power <= 0:
        raise UserError(f"--power: must be > 0, got {config.power}")
    if config.test_items_per_user < 1:
        raise UserError(f"--test_items_per_user: must be >= 1, got {config.test_items_per_user}")
    for name in ("generator_dim", "generator_iterations", "generator_batch_size"):
        if getattr(config, name) < 1:
            raise UserError(f"--{name}: must be >= 1, got {getattr(config, name)}")
    settings = GeneratorSettings(
        config.generator_dim,
        config.generator_iterations,
        config.generator_batch_size,
        config.generator_lr,
        config.epsilon,
        config.generator_seed,
    )
    world = build_semi_synthetic_world(read_movielens_100k_ratings(), settings, Path(config.out_dir) / "generator")
    return write_semi_synthetic_click_log(
        world, config.power, config.out_dir, config.test_items_per_user, config.test_seed
    )
