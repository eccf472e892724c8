"""A RecBole dataset as LLMRec data: item text from ``.item``, item attributes from the knowledge graph, splits.

The atomic files themselves are read and validated by :mod:`domains.recsys.recbole_io`; this module turns
them into split :class:`~domains.recsys.llmrec.interactions.InteractionData`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from domains.recsys.llmrec.interactions import InteractionData, interactions_from_frame, natural_key
from domains.recsys.recbole_io import KG_ATTRIBUTE_RELATIONS, RecboleTables, read_recbole_dataset


def item_table_from_recbole(tables: RecboleTables) -> pd.DataFrame:
    """Item universe with display ``title`` and descriptive ``text`` from a RecBole ``.item`` table.

    The text joins the title, year and genres the way LLMRec's prompts do (``"Toy Story (1995); genres:
    Animation, Children's, Comedy"``). Without an ``.item`` file the items are those seen in ``.inter``.
    """
    if tables.item is None:
        ids = sorted(tables.inter["item_id"].astype(str).unique(), key=natural_key)
        return pd.DataFrame({"item_id": ids, "title": ids, "text": ids})
    item = tables.item
    title_column = next((c for c in ("movie_title", "title", "name") if c in item.columns), None)
    titles = item[title_column].astype(str) if title_column else item["item_id"].astype(str)
    year_column = next((c for c in ("release_year", "year") if c in item.columns), None)
    genre_column = next((c for c in ("class", "genre", "genres", "categories") if c in item.columns), None)
    texts = []
    for row in range(len(item)):
        text = titles.iloc[row]
        if year_column and str(item[year_column].iloc[row]).strip():
            text += f" ({str(item[year_column].iloc[row]).strip()})"
        if genre_column and str(item[genre_column].iloc[row]).strip():
            text += "; genres: " + ", ".join(str(item[genre_column].iloc[row]).split())
        texts.append(text)
    return pd.DataFrame({"item_id": item["item_id"].astype(str), "title": titles.tolist(), "text": texts})


def kg_item_attributes(
    tables: RecboleTables, item_ids: Sequence[str], relations: dict[str, str] | None = None
) -> list[dict[str, list[str]]]:
    """Item attributes from knowledge-graph triples (e.g. director, country, language entities).

    Follows ``.link`` (item → entity) and keeps triples whose head is the item's entity and whose relation is
    one of ``relations`` (attribute name → KG relation). Values are the tail entity ids (Freebase MIDs in
    ML-100K; the KG carries no entity names).

    Returns:
        One dict per item in ``item_ids`` order; items without a KG entity get ``{}``.
    """
    relations = relations or KG_ATTRIBUTE_RELATIONS
    attributes: list[dict[str, list[str]]] = [{} for _ in item_ids]
    if tables.kg is None or tables.link is None:
        return attributes
    entity_to_item = dict(zip(tables.link["entity_id"].astype(str), tables.link["item_id"].astype(str)))
    item_position = {raw: index for index, raw in enumerate(item_ids)}
    relation_to_name = {relation: name for name, relation in relations.items()}
    kg = tables.kg[tables.kg["relation_id"].isin(relation_to_name)]
    for head, relation, tail in zip(kg["head_id"], kg["relation_id"], kg["tail_id"]):
        raw_item = entity_to_item.get(head)
        if raw_item is None or raw_item not in item_position:
            continue
        values = attributes[item_position[raw_item]].setdefault(relation_to_name[relation], [])
        if tail not in values:
            values.append(tail)
    return attributes


def kg_item_entities(tables: RecboleTables, item_ids: Sequence[str]) -> list[set[str]]:
    """Every KG tail entity linked to each item (all relations whose head is the item's entity)."""
    entities: list[set[str]] = [set() for _ in item_ids]
    if tables.kg is None or tables.link is None:
        return entities
    entity_to_item = dict(zip(tables.link["entity_id"].astype(str), tables.link["item_id"].astype(str)))
    item_position = {raw: index for index, raw in enumerate(item_ids)}
    for head, relation, tail in zip(tables.kg["head_id"], tables.kg["relation_id"], tables.kg["tail_id"]):
        raw_item = entity_to_item.get(head)
        if raw_item is not None and raw_item in item_position:
            entities[item_position[raw_item]].add(f"{relation}={tail}")
    return entities


def read_recbole_interactions(
    folder: str | Path,
    name: str | None = None,
    strategy: str = "random",
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 2022,
    min_rating: float | None = None,
) -> tuple[InteractionData, RecboleTables]:
    """Reads a RecBole dataset folder into split :class:`InteractionData` (KG attributes attached).

    Args:
        folder: Folder with ``<name>.inter`` (and optional ``.item/.user/.kg/.link``).
        name: Dataset name (file stem); inferred when the folder has one ``.inter``.
        strategy: ``random`` or ``temporal`` per-user split.
        ratios: Train/validation/test fractions.
        seed: Split seed.
        min_rating: Positive threshold on ``rating``; ``None`` treats every interaction as positive.

    Returns:
        The split data and the raw tables (for KG-based augmentation).
    """
    tables = read_recbole_dataset(folder, name)
    items = item_table_from_recbole(tables)
    data = interactions_from_frame(
        tables.inter, items, strategy=strategy, ratios=ratios, seed=seed, min_rating=min_rating, name=tables.name
    )
    data.item_attributes = kg_item_attributes(tables, data.item_ids)
    return data, tables


TITLE_STOPWORDS = frozenset(
    "the a an and of in on to for with from at by la le les el de du der die das il is it its".split()
)
"""Words left out of ``title_word`` attributes (articles and prepositions carry no taste)."""


def item_file_facts(tables: RecboleTables, item_ids: Sequence[str]) -> list[dict[str, list[str]]]:
    """Per item, facts read from the ``.item`` file: ``genre`` values, release ``decade`` and ``title_word``.

    Genres are the item's ``class``/``genre`` tokens, the decade is ``"1990s"`` from a 4-digit release year,
    title words are the lower-cased alphanumeric words of the title (3+ letters, no stop words). Items
    absent from the file, or a dataset without one, get ``{}``.
    """
    facts: list[dict[str, list[str]]] = [{} for _ in item_ids]
    if tables.item is None:
        return facts
    item = tables.item
    position = {raw: index for index, raw in enumerate(item_ids)}
    title_column = next((c for c in ("movie_title", "title", "name") if c in item.columns), None)
    year_column = next((c for c in ("release_year", "year") if c in item.columns), None)
    genre_column = next((c for c in ("class", "genre", "genres", "categories") if c in item.columns), None)
    for row in range(len(item)):
        index = position.get(str(item["item_id"].iloc[row]))
        if index is None:
            continue
        entry: dict[str, list[str]] = {}
        if genre_column:
            genres = str(item[genre_column].iloc[row]).split()
            if genres:
                entry["genre"] = list(dict.fromkeys(genres))
        if year_column:
            year = str(item[year_column].iloc[row]).strip()
            if len(year) == 4 and year.isdigit():
                entry["decade"] = [f"{year[:3]}0s"]
        if title_column:
            words = re.findall(r"[a-z0-9]+", str(item[title_column].iloc[row]).lower())
            kept = [word for word in words if len(word) >= 3 and word not in TITLE_STOPWORDS and not word.isdigit()]
            if kept:
                entry["title_word"] = list(dict.fromkeys(kept))
        facts[index] = entry
    return facts


def user_file_facts(tables: RecboleTables, user_ids: Sequence[str]) -> list[dict[str, str]]:
    """Per user, ``age``, ``gender`` and ``occupation`` from the ``.user`` file where it has them (else ``{}``)."""
    facts: list[dict[str, str]] = [{} for _ in user_ids]
    if tables.user is None:
        return facts
    user = tables.user
    position = {raw: index for index, raw in enumerate(user_ids)}
    columns = [name for name in ("age", "gender", "occupation") if name in user.columns]
    for row in range(len(user)):
        index = position.get(str(user["user_id"].iloc[row]))
        if index is not None:
            facts[index] = {name: str(user[name].iloc[row]).strip() for name in columns}
    return facts
