"""Which interactions LLMRec trains on: the built-in MovieLens-100K, a RecBole folder or an LLMRec layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from domains.recsys.llmrec import text_features
from domains.recsys.llmrec.interactions import InteractionData
from domains.recsys.llmrec.movielens import build_movielens_100k
from domains.recsys.llmrec.recbole_dataset import read_recbole_interactions
from domains.recsys.llmrec.released_layout import LAYOUT_MARKER, interactions_from_llmrec, read_llmrec_dataset
from domains.recsys.recbole_io import DataFormatError, RecboleTables
from shared.user_errors import NothingProduced, UserError

MOVIELENS_100K = "movielens-100k"
SPLIT_STRATEGIES = ("random", "temporal")


@dataclass
class DatasetConfig:
    """How the interactions are read and split (the input itself is the command's --input)."""

    name: str | None = None
    """Dataset name (stem of the atomic files) when the input folder holds several."""
    split_strategy: str = "random"
    """'random' (each user's interactions shuffled with split_seed) or 'temporal' (each user's latest last)."""
    split_seed: int = 2022
    """Seed of the per-user random split."""
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Train/validation/test fractions of each user's interactions."""
    min_rating: float | None = None
    """Positives are ratings >= this value; null keeps every interaction (implicit feedback)."""
    text_features: bool = True
    """Compute MiniLM item text features (title, year, genres) for the side-feature branch."""
    cache_dir: str = "runs/recsys/cache"
    """Cache of computed text features."""


def check_dataset_config(config: DatasetConfig, prefix: str = "--dataset.") -> None:
    """Refuses split settings that cannot work, naming the flag.

    Raises:
        UserError: an unknown split strategy or ratios that are not three non-negative fractions summing to 1.
    """
    if config.split_strategy not in SPLIT_STRATEGIES:
        raise UserError(f"{prefix}split_strategy: must be one of {SPLIT_STRATEGIES}, got {config.split_strategy!r}")
    ratios = tuple(config.split_ratios)
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-6:
        raise UserError(f"{prefix}split_ratios: must be three non-negative fractions summing to 1, got {list(ratios)}")


def is_llmrec_layout(folder: str | Path) -> bool:
    """Whether ``folder`` is in LLMRec's released layout (it has ``train.json``)."""
    return (Path(folder) / LAYOUT_MARKER).exists()


def load_dataset(
    source: str, config: DatasetConfig, flag: str = "--input"
) -> tuple[InteractionData, RecboleTables | None]:
    """Loads and splits the dataset ``source`` (with text features when asked).

    Args:
        source: ``movielens-100k`` (built in, from the recbole package), a folder of RecBole atomic files, or a
            folder in LLMRec's layout (it has ``train.json``; its own split is used).
        config: Split and feature settings.
        flag: The command's flag that gave ``source`` (for messages).

    Returns:
        The data and, for RecBole sources, the raw tables (the KG backend needs them).

    Raises:
        UserError: ``source`` is neither the built-in name nor a folder, or a split setting is invalid.
        DataFormatError: A file of the dataset is malformed (file and line named).
        NothingProduced: The dataset holds no training interaction (e.g. an ``.inter`` file with only its
            header, or a ``min_rating`` no rating reaches).
    """
    check_dataset_config(config)
    ratios = tuple(config.split_ratios)
    tables: RecboleTables | None = None
    try:
        if source == MOVIELENS_100K:
            data, tables = build_movielens_100k(
                split_strategy=config.split_strategy,
                seed=config.split_seed,
                ratios=ratios,
                min_rating=config.min_rating,
                text_features=config.text_features,
                cache_dir=config.cache_dir,
            )
        else:
            folder = Path(source)
            if not folder.exists():
                raise UserError(
                    f"{flag} {source}: no such folder (give a folder of RecBole atomic files, an LLMRec layout, "
                    f"or '{MOVIELENS_100K}')"
                )
            if not folder.is_dir():
                raise UserError(f"{flag} {source}: is a file; give the folder that holds the dataset's files")
            if is_llmrec_layout(folder):
                data = interactions_from_llmrec(read_llmrec_dataset(folder), name=folder.name)
                if not config.text_features:
                    data.item_text_features = data.item_image_features = None
            else:
                data, tables = read_recbole_interactions(
                    folder,
                    config.name,
                    strategy=config.split_strategy,
                    ratios=ratios,
                    seed=config.split_seed,
                    min_rating=config.min_rating,
                )
                if config.text_features:
                    data.item_text_features = text_features.cached_text_features(data.item_texts, config.cache_dir)
    except DataFormatError:
        raise
    except ValueError as error:  # split or rating settings the data cannot satisfy
        raise UserError(f"{flag} {source}: {error}") from None
    if len(data.train) == 0:
        threshold = (
            f" with rating >= {config.min_rating} (--dataset.min_rating)" if config.min_rating is not None else ""
        )
        raise NothingProduced(f"{flag} {source}: no training interactions{threshold}")
    return data, tables
