"""LLM graph augmentation (LLMRec): candidates from a trained model, then edges, item attributes, profiles.

The configured backend (:mod:`~domains.recsys.llmrec.backends`) answers the prompts of
:mod:`~domains.recsys.llmrec.prompts`; every raw answer is cached on disk
(:class:`~domains.recsys.llmrec.prompt_cache.PromptCache`), so a rerun is resumable and idempotent.
Malformed answers are counted and dropped. The result is written as an augmentation folder
(:mod:`~domains.recsys.llmrec.augmentation_files`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from domains.recsys.llmrec.augmentation_files import (
    AUGMENTATION_FILES,
    AugmentationRun,
    TaskSummary,
    write_augmentation,
)
from domains.recsys.llmrec.backends import (
    AugmentationBackend,
    BackendUnavailable,
    ChatCompletionsBackend,
    CompletionRequest,
    KnowledgeGraphBackend,
    TransformersBackend,
)
from domains.recsys.llmrec.graphs import items_by_user
from domains.recsys.llmrec.interactions import InteractionData
from domains.recsys.llmrec.model import LLMRecModel
from domains.recsys.llmrec.prompt_cache import PromptCache
from domains.recsys.llmrec.prompts import (
    TASKS,
    build_messages,
    describe_item,
    parse_attribute_answer,
    parse_edge_answer,
    parse_profile_answer,
    prompt_template,
)
from domains.recsys.llmrec.ranking_metrics import top_k_items
from domains.recsys.llmrec.recbole_dataset import (
    item_file_facts,
    kg_item_attributes,
    kg_item_entities,
    user_file_facts,
)
from domains.recsys.llmrec.training import load_run
from domains.recsys.recbole_io import RecboleTables
from shared.run_folder import RunFolder
from shared.user_errors import NothingProduced, UserError

logger = logging.getLogger(__name__)

BACKENDS = ("kg", "openai", "transformers")
AUGMENTATION_DIR = "augmentation"
"""The augmentation folder inside a run folder."""


@dataclass
class DecodingSettings:
    """Sampling settings per task (LLMRec: edges τ 0.6, top-p 0.1; profiles τ 0.8, top-p 0.1)."""

    edge_temperature: float = 0.6
    """Temperature of edge (pos::neg) answers."""
    edge_top_p: float = 0.1
    """Top-p of edge answers."""
    attribute_temperature: float = 0.6
    """Temperature of attribute answers."""
    attribute_top_p: float = 0.1
    """Top-p of attribute answers."""
    profile_temperature: float = 0.8
    """Temperature of profile answers."""
    profile_top_p: float = 0.1
    """Top-p of profile answers."""
    max_tokens: int = 128
    """Longest answer in tokens."""


def _ask(
    backend: AugmentationBackend,
    cache: PromptCache,
    request: CompletionRequest,
    summary: TaskSummary,
    parse: Callable[[str], object | None],
) -> object | None:
    summary.requested += 1
    key = cache.key(backend.identity, request)
    answer = cache.get(key)
    if answer is not None:
        summary.cached += 1
    else:
        try:
            answer = backend.complete(request)
        except BackendUnavailable as error:
            summary.failed += 1
            logger.warning("%s request failed: %s", request.task, error)
            return None
        except ValueError as error:
            summary.malformed += 1
            logger.warning("%s answer malformed: %s", request.task, error)
            return None
        if answer is None:
            summary.unsupported += 1
            return None
        cache.put(key, answer, backend.identity, request.task)
    parsed = parse(answer)
    if parsed is None:
        summary.malformed += 1
        return None
    summary.answered += 1
    return parsed


def run_augmentation(
    data: InteractionData,
    backend: AugmentationBackend,
    cache: PromptCache,
    tasks: tuple[str, ...] | list[str] = ("edges", "attributes"),
    candidates: np.ndarray | None = None,
    users: np.ndarray | None = None,
    items: np.ndarray | None = None,
    history_size: int = 20,
    decoding: DecodingSettings | None = None,
) -> AugmentationRun:
    """Runs the augmentation tasks and parses the answers.

    Args:
        data: Split interactions (prompts show training history only).
        backend: The answer source.
        cache: Answer cache.
        tasks: Any of ``edges``, ``attributes``, ``profiles``.
        candidates: (n_users, k) candidate item indices (needed for ``edges``).
        users: Users to augment (default: all with training history).
        items: Items for attribute completion (default: all).
        history_size: Most items of a user's history shown in a prompt.
        decoding: Sampling settings.

    Returns:
        Parsed edges/attributes/profiles and the per-task summary.
    """
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        raise ValueError(f"unknown augmentation task(s) {unknown}; available: {TASKS}")
    decoding = decoding or DecodingSettings()
    history: dict[int, list[int]] = {}
    for user, item in data.train:
        history.setdefault(int(user), []).append(int(item))
    users = np.array(sorted(history)) if users is None else np.asarray(users)
    result = AugmentationRun(summary={task: TaskSummary() for task in tasks})

    def history_text(user: int) -> tuple[list[int], str]:
        shown = history[user][:history_size]
        return shown, "\n".join(describe_item(data, item) for item in shown)

    if "edges" in tasks:
        if candidates is None:
            raise ValueError("the edges task needs candidates from a trained base model")
        template = prompt_template("implicit_edges")
        for user in users:
            user = int(user)
            shown, text = history_text(user)
            pool = [int(item) for item in candidates[user]]
            request = CompletionRequest(
                "edges",
                build_messages(
                    template,
                    history=text,
                    n_candidates=str(len(pool)),
                    candidates="\n".join(describe_item(data, item) for item in pool),
                ),
                decoding.edge_temperature,
                decoding.edge_top_p,
                decoding.max_tokens,
                payload={"user": user, "history": shown, "candidates": pool},
            )
            pool_ids = [data.item_ids[item] for item in pool]
            parsed = _ask(
                backend, cache, request, result.summary["edges"], lambda a, ids=pool_ids: parse_edge_answer(a, ids)
            )
            if parsed is not None:
                lookup = dict(zip(pool_ids, pool))
                result.edges.append((user, lookup[parsed[0]], lookup[parsed[1]]))
    if "attributes" in tasks:
        template = prompt_template("item_attributes")
        for item in range(data.n_items) if items is None else items:
            item = int(item)
            request = CompletionRequest(
                "attributes",
                build_messages(template, item_id=data.item_ids[item], item_text=data.item_texts[item]),
                decoding.attribute_temperature,
                decoding.attribute_top_p,
                decoding.max_tokens,
                payload={"item": item},
            )
            parsed = _ask(backend, cache, request, result.summary["attributes"], parse_attribute_answer)
            if parsed is not None:
                result.item_attributes[item] = parsed
    if "profiles" in tasks:
        template = prompt_template("user_profile")
        for user in users:
            user = int(user)
            shown, text = history_text(user)
            request = CompletionRequest(
                "profiles",
                build_messages(template, history=text),
                decoding.profile_temperature,
                decoding.profile_top_p,
                max(decoding.max_tokens, 256),
                payload={"user": user, "history": shown, "all_history": history[user]},
            )
            parsed = _ask(backend, cache, request, result.summary["profiles"], parse_profile_answer)
            if parsed is not None:
                result.user_profiles[user] = parsed
    return result


def knowledge_graph_backend(data: InteractionData, tables: RecboleTables | None) -> KnowledgeGraphBackend:
    """The offline backend for a RecBole dataset with ``.kg`` and ``.link`` files.

    Edges come from KG overlap; attributes (genres, decade, title words) and profiles (summarised from the
    training history, with age/gender from ``.user``) from the ``.item``/``.user`` files when present.

    Raises:
        UserError: the dataset has no knowledge graph.
    """
    if not has_knowledge_graph(tables):
        raise UserError(
            f"--backend kg: dataset {data.name!r} has no .kg and .link atomic files; "
            "use an LLM backend (openai, transformers)"
        )
    item_facts = item_file_facts(tables, data.item_ids) if tables.item is not None else None
    return KnowledgeGraphBackend(
        data.item_ids,
        kg_item_entities(tables, data.item_ids),
        kg_item_attributes(tables, data.item_ids),
        item_facts=item_facts,
        user_facts=user_file_facts(tables, data.user_ids),
    )


def has_knowledge_graph(tables: RecboleTables | None) -> bool:
    """Whether a dataset's tables include the ``.kg`` and ``.link`` files the KG backend needs."""
    return tables is not None and tables.kg is not None and tables.link is not None


@dataclass
class AugmentConfig:
    """Augment a trained recommender's data with an LLM (or the offline knowledge-graph backend)."""

    run: str = "runs/recsys/demo/base"
    """Trained run (from domains.recsys.train) whose model proposes the candidates and whose data is used."""
    run_name: str = "augment"
    """Run folder for the output: runs/recsys/<run_name>/augmentation/."""
    runs_root: str = "runs"
    """Root folder of run folders."""
    backend: str = "kg"
    """'kg' (offline: edges from the dataset's knowledge graph; attributes (genres, decade, title words) and
    profiles (summarised from the training history) from its item/user files), 'openai' (chat-completions
    endpoint) or 'transformers' (local causal LM from model_path)."""
    tasks: list[str] = field(default_factory=lambda: ["edges", "attributes", "profiles"])
    """Tasks to run: edges, attributes, profiles."""
    candidates_k: int = 10
    """Candidates per user from the base model (LLMRec |C| = 10)."""
    history_size: int = 20
    """Most history items shown per user prompt."""
    max_users: int | None = None
    """Only the first N users (null: all) — useful to try an endpoint cheaply."""
    max_items: int | None = None
    """Only the first N items for attribute completion (null: all)."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """Chat-completions endpoint root; the OPENAI_BASE_URL environment variable overrides it when set."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (never put keys in configs)."""
    model: str = "gpt-3.5-turbo"
    """Model name sent to the endpoint."""
    model_path: str | None = None
    """Folder of a local transformers causal LM (backend 'transformers')."""
    timeout_s: float = 60.0
    """Per-attempt HTTP timeout, seconds."""
    max_retries: int = 4
    """HTTP retries with exponential backoff."""
    backoff_s: float = 1.0
    """Backoff factor, seconds."""
    cache_dir: str = "runs/recsys/llm_cache"
    """Answer cache shared by runs (keyed by backend, prompt and decoding settings)."""
    decoding: DecodingSettings = field(default_factory=DecodingSettings)
    """Sampling settings per task."""


def check_augment_config(config: AugmentConfig) -> None:
    """Refuses settings that cannot work, naming the flag.

    Raises:
        UserError: an unknown backend or task, no task, or a count or time out of range.
    """
    if config.backend not in BACKENDS:
        raise UserError(f"--backend: must be one of {BACKENDS}, got {config.backend!r}")
    unknown = [task for task in config.tasks if task not in TASKS]
    if unknown or not config.tasks:
        raise UserError(f"--tasks: give one or more of {list(TASKS)}, got {list(config.tasks)}")
    minimum_k = 2 if "edges" in config.tasks else 1
    checks = (
        ("candidates_k", config.candidates_k, minimum_k),
        ("history_size", config.history_size, 1),
        ("max_users", config.max_users, 1),
        ("max_items", config.max_items, 1),
        ("max_retries", config.max_retries, 0),
        ("decoding.max_tokens", config.decoding.max_tokens, 1),
    )
    for name, value, minimum in checks:
        if value is not None and value < minimum:
            raise UserError(f"--{name}: must be >= {minimum}, got {value}")
    if config.timeout_s <= 0 or config.backoff_s < 0:
        raise UserError(f"--timeout_s/--backoff_s: must be > 0 and >= 0, got {config.timeout_s}, {config.backoff_s}")
    if config.backend == "transformers" and not config.model_path:
        raise UserError("--model_path: backend 'transformers' needs a local causal LM folder")


def make_backend(config: AugmentConfig, data: InteractionData, tables: RecboleTables | None) -> AugmentationBackend:
    """The backend named by ``config.backend``."""
    if config.backend == "kg":
        return knowledge_graph_backend(data, tables)
    if config.backend == "openai":
        return ChatCompletionsBackend(
            os.environ.get("OPENAI_BASE_URL", config.base_url),
            config.model,
            api_key=os.environ.get(config.api_key_env),
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            backoff_s=config.backoff_s,
        )
    if config.backend == "transformers":
        if not config.model_path or not Path(config.model_path).is_dir():
            raise UserError(f"--model_path {config.model_path}: no such folder (a local causal LM)")
        return TransformersBackend(config.model_path)
    raise UserError(f"--backend: must be one of {BACKENDS}, got {config.backend!r}")


def propose_candidates(model: LLMRecModel, data: InteractionData, k: int) -> np.ndarray:
    """The model's top-``k`` items per user among those the user has not trained on: (n_users, k) indices.

    Raises:
        UserError: ``k`` exceeds the number of items (flag ``--candidates_k``).
    """
    if k > data.n_items:
        raise UserError(f"--candidates_k: must be <= {data.n_items} (the items of {data.name!r}), got {k}")
    users_emb, items_emb = model.user_item_embeddings()
    return top_k_items(users_emb, items_emb, items_by_user(data.train, data.n_users, data.n_items), k)


def augment_with_model(
    model: LLMRecModel,
    data: InteractionData,
    tables: RecboleTables | None,
    config: AugmentConfig,
    out_dir: str | Path,
) -> tuple[Path, AugmentationRun]:
    """Proposes candidates with ``model``, runs the tasks and writes the augmentation folder ``out_dir``."""
    backend = make_backend(config, data, tables)
    candidates = propose_candidates(model, data, config.candidates_k)
    users = np.arange(data.n_users)[: config.max_users] if config.max_users else None
    items = np.arange(data.n_items)[: config.max_items] if config.max_items else None
    result = run_augmentation(
        data,
        backend,
        PromptCache(config.cache_dir),
        tasks=tuple(config.tasks),
        candidates=candidates,
        users=users,
        items=items,
        history_size=config.history_size,
        decoding=config.decoding,
    )
    out = write_augmentation(result, data, out_dir, {"backend": backend.identity, "base_run": str(config.run)})
    return out, result


def augment_run(config: AugmentConfig) -> tuple[RunFolder, AugmentationRun]:
    """``domains.recsys.augment``: augment the data of the trained run ``config.run`` into a new run folder.

    Writes ``runs/recsys/<run_name>/``: ``config.yaml``, ``augmentation/`` (edges, attributes, profiles,
    summary) and the ``run.json`` marker.

    Raises:
        UserError: bad settings, or ``config.run`` is not a finished trained run.
        NothingProduced: the backend gave no usable answer to any request.
    """
    check_augment_config(config)
    loaded = load_run(config.run)
    if config.candidates_k > loaded.data.n_items:
        raise UserError(
            f"--candidates_k: must be <= {loaded.data.n_items} (the items of --run), got {config.candidates_k}"
        )
    if config.backend == "kg" and not has_knowledge_graph(loaded.tables):
        knowledge_graph_backend(loaded.data, loaded.tables)  # raises, naming the flag
    run = RunFolder.create("recsys", config.run_name, config.runs_root)
    run.clear_finished()
    run.save_config(config)
    _, result = augment_with_model(loaded.model, loaded.data, loaded.tables, config, run.path / AUGMENTATION_DIR)
    if not any(counts.answered for counts in result.summary.values()):
        counts = "; ".join(f"{task}: {vars(summary)}" for task, summary in result.summary.items())
        raise NothingProduced(f"the {config.backend} backend gave no usable answer ({counts})")
    run.mark_finished(
        "domains.recsys.augment",
        outputs=[f"{AUGMENTATION_DIR}/{name}" for name in AUGMENTATION_FILES],
        summary={f"{task}_answered": counts.answered for task, counts in result.summary.items()},
    )
    return run, result
