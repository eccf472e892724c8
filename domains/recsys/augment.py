"""LLM graph augmentation (LLMRec): candidates from a trained model, then edges, item attributes, profiles.

``python -m domains.recsys.augment --base_run runs/recsys/demo/base`` asks the configured backend

* ``edges``: given a user's history and the base model's top-k candidates, pick a liked and a disliked
  candidate (``pos::neg``) → one augmented BPR triplet per user;
* ``attributes``: complete an item's ``director::country::language``;
* ``profiles``: a JSON user profile (age, gender, liked/disliked genre, liked directors, country, language).

Prompts are the templates in ``domains/recsys/prompts/``. Every raw answer is cached on disk under the
SHA-256 of (backend identity, task, messages, decoding settings), so a rerun is resumable and idempotent.
Malformed answers are counted and dropped. Output (RecBole-style atomic files plus ``summary.json``) goes to
``runs/recsys/<run_name>/augmentation/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from domains.recsys.augmentation_backends import (
    AugmentationBackend,
    BackendUnavailable,
    ChatCompletionsBackend,
    CompletionRequest,
    KnowledgeGraphBackend,
    TransformersBackend,
)
from domains.recsys.data import (
    DataFormatError,
    InteractionData,
    RecboleTables,
    kg_item_attributes,
    kg_item_entities,
    read_atomic_file,
    write_atomic_file,
)
from shared.cli import write_text_atomically

logger = logging.getLogger(__name__)

TASKS = ("edges", "attributes", "profiles")
ATTRIBUTE_FIELDS = ("director", "country", "language")
PROFILE_KEYS = ("age", "gender", "liked genre", "disliked genre", "liked directors", "country", "language")
EDGES_FILE, ATTRIBUTES_FILE, PROFILES_FILE = "edges.tsv", "item_attributes.tsv", "user_profiles.tsv"


def prompt_template(name: str) -> str:
    """The text of ``domains/recsys/prompts/<name>.txt``."""
    return resources.files("domains.recsys").joinpath("prompts", f"{name}.txt").read_text(encoding="utf-8")


class PromptCache:
    """Raw answers on disk, one JSON file per request key (``<dir>/<key[:2]>/<key>.json``), written atomically.

    Args:
        directory: Cache folder (created on first write).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(identity: str, request: CompletionRequest) -> str:
        """SHA-256 of the backend identity, task, messages and decoding settings."""
        material = json.dumps(
            {
                "backend": identity,
                "task": request.task,
                "messages": request.messages,
                "temperature": request.temperature,
                "top_p": request.top_p,
                "max_tokens": request.max_tokens,
            },
            sort_keys=True,
        )
        return hashlib.sha256(material.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The cached answer, or ``None`` (a corrupt cache file counts as absent)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))["answer"]
        except (ValueError, KeyError):
            logger.warning("ignoring unreadable cache entry %s", path)
            return None

    def put(self, key: str, answer: str, identity: str, task: str) -> None:
        """Stores an answer."""
        payload = {"answer": answer, "backend": identity, "task": task}
        write_text_atomically(self._path(key), json.dumps(payload, ensure_ascii=False))


@dataclass
class TaskSummary:
    """Counts for one task: requested, answered (valid), cached (served from cache), malformed, failed
    (no answer after retries), unsupported (backend does not answer this task)."""

    requested: int = 0
    answered: int = 0
    cached: int = 0
    malformed: int = 0
    failed: int = 0
    unsupported: int = 0


@dataclass
class AugmentationRun:
    """Parsed results of one augmentation pass (indices, not raw ids)."""

    edges: list[tuple[int, int, int]] = field(default_factory=list)
    item_attributes: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    user_profiles: dict[int, dict[str, str]] = field(default_factory=dict)
    summary: dict[str, TaskSummary] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# Prompts and answer parsing
# --------------------------------------------------------------------------------------------------------------


def describe_item(data: InteractionData, item: int) -> str:
    """``[raw id] item text`` as shown in prompts."""
    return f"[{data.item_ids[item]}] {data.item_texts[item]}"


def build_messages(template: str, **fields: str) -> list[dict[str, str]]:
    """System + user chat messages from a prompt template."""
    return [
        {"role": "system", "content": prompt_template("system").strip()},
        {"role": "user", "content": template.format(**fields).strip()},
    ]


_EDGE_PATTERN = re.compile(r"\[?([^\s:\[\],]+)\]?\s*::\s*\[?([^\s:\[\],]+)\]?")


def parse_edge_answer(answer: str, candidate_ids: list[str]) -> tuple[str, str] | None:
    """The first ``pos::neg`` in the answer with both ids among the candidates and different; else ``None``."""
    for match in _EDGE_PATTERN.finditer(answer):
        positive, negative = match.group(1), match.group(2)
        if positive != negative and positive in candidate_ids and negative in candidate_ids:
            return positive, negative
    return None


def parse_attribute_answer(answer: str) -> dict[str, list[str]] | None:
    """``director::country::language`` on the first non-empty line; ``|`` separates several values of one
    field; ``unknown`` fields are dropped. Returns ``None`` when malformed."""
    line = next((line.strip() for line in answer.splitlines() if line.strip()), "")
    fields = [value.strip() for value in line.split("::")]
    if len(fields) != len(ATTRIBUTE_FIELDS) or not all(fields):
        return None
    values = {
        name: [part.strip() for part in value.split("|") if part.strip()]
        for name, value in zip(ATTRIBUTE_FIELDS, fields)
        if value.lower() != "unknown"
    }
    return values or None


def parse_profile_answer(answer: str) -> dict[str, str] | None:
    """The first JSON object in the answer holding every profile key; ``None`` when malformed."""
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        profile = json.loads(answer[start : end + 1])
    except ValueError:
        return None
    if not isinstance(profile, dict) or not all(key in profile for key in PROFILE_KEYS):
        return None
    return {key: " ".join(str(profile[key]).split()) for key in PROFILE_KEYS}


def profile_text(profile: dict[str, str]) -> str:
    """One line describing a profile (what gets embedded as the user's profile feature)."""
    return "; ".join(f"{key}: {profile[key]}" for key in PROFILE_KEYS)


# --------------------------------------------------------------------------------------------------------------
# Running the tasks
# --------------------------------------------------------------------------------------------------------------


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
                payload={"user": user, "history": shown},
            )
            parsed = _ask(backend, cache, request, result.summary["profiles"], parse_profile_answer)
            if parsed is not None:
                result.user_profiles[user] = parsed
    return result


# --------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------


def write_augmentation(run: AugmentationRun, data: InteractionData, folder: str | Path, details: dict) -> Path:
    """Writes ``edges.tsv``, ``item_attributes.tsv``, ``user_profiles.tsv`` (atomic files) and ``summary.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    edges = pd.DataFrame(
        [(data.user_ids[u], data.item_ids[p], data.item_ids[n]) for u, p, n in run.edges],
        columns=["user_id", "pos_item_id", "neg_item_id"],
    )
    write_atomic_file(edges, folder / EDGES_FILE, {"user_id": "token", "pos_item_id": "token", "neg_item_id": "token"})
    attributes = pd.DataFrame(
        [
            (data.item_ids[item], *("|".join(values.get(name, [])) for name in ATTRIBUTE_FIELDS))
            for item, values in sorted(run.item_attributes.items())
        ],
        columns=["item_id", *ATTRIBUTE_FIELDS],
    )
    write_atomic_file(
        attributes, folder / ATTRIBUTES_FILE, {"item_id": "token", **dict.fromkeys(ATTRIBUTE_FIELDS, "token")}
    )
    profiles = pd.DataFrame(
        [
            (data.user_ids[user], json.dumps(profile, ensure_ascii=False))
            for user, profile in sorted(run.user_profiles.items())
        ],
        columns=["user_id", "profile"],
    )
    write_atomic_file(profiles, folder / PROFILES_FILE, {"user_id": "token", "profile": "token"})
    summary = {task: vars(counts) for task, counts in run.summary.items()}
    write_text_atomically(folder / "summary.json", json.dumps({"tasks": summary, **details}, indent=2))
    return folder


def read_augmentation(folder: str | Path, data: InteractionData):
    """Reads an augmentation folder back as index-based :class:`~domains.recsys.recommender.Augmentation`.

    Raises:
        DataFormatError: A file refers to a user or item id that is not in ``data`` (file and line named).
    """
    from domains.recsys.recommender import Augmentation

    folder = Path(folder)
    users, items = data.user_index(), data.item_index()
    augmentation = Augmentation(folder=str(folder))

    def lookup(table: dict[str, int], value: str, what: str, path: Path, row: int) -> int:
        if value not in table:
            raise DataFormatError(f"{path}:{row + 2}: unknown {what} {value!r}")
        return table[value]

    path = folder / EDGES_FILE
    if path.exists():
        frame = read_atomic_file(path, ("user_id", "pos_item_id", "neg_item_id"))
        augmentation.edges = np.asarray(
            [
                (
                    lookup(users, u, "user_id", path, row),
                    lookup(items, p, "item_id", path, row),
                    lookup(items, n, "item_id", path, row),
                )
                for row, (u, p, n) in enumerate(zip(frame["user_id"], frame["pos_item_id"], frame["neg_item_id"]))
            ],
            dtype=np.int64,
        ).reshape(-1, 3)
    path = folder / ATTRIBUTES_FILE
    if path.exists():
        frame = read_atomic_file(path, ("item_id",))
        names = [column for column in frame.columns if column != "item_id"]
        for row in range(len(frame)):
            item = lookup(items, frame["item_id"].iloc[row], "item_id", path, row)
            values = {name: frame[name].iloc[row].split("|") for name in names if frame[name].iloc[row].strip()}
            augmentation.item_attributes[item] = values
    path = folder / PROFILES_FILE
    if path.exists():
        frame = read_atomic_file(path, ("user_id", "profile"))
        for row in range(len(frame)):
            user = lookup(users, frame["user_id"].iloc[row], "user_id", path, row)
            try:
                profile = json.loads(frame["profile"].iloc[row])
            except ValueError as error:
                raise DataFormatError(f"{path}:{row + 2}: profile is not JSON ({error})") from error
            augmentation.user_profiles[user] = profile_text(profile)
    return augmentation


def knowledge_graph_backend(data: InteractionData, tables: RecboleTables) -> KnowledgeGraphBackend:
    """The offline KG backend for a RecBole dataset with ``.kg`` and ``.link`` files."""
    if tables is None or tables.kg is None or tables.link is None:
        raise ValueError("the knowledge-graph backend needs a dataset with .kg and .link atomic files")
    return KnowledgeGraphBackend(
        data.item_ids, kg_item_entities(tables, data.item_ids), kg_item_attributes(tables, data.item_ids)
    )


# --------------------------------------------------------------------------------------------------------------
# Command
# --------------------------------------------------------------------------------------------------------------


@dataclass
class AugmentConfig:
    """Augment a trained recommender's data with an LLM (or the offline knowledge-graph backend)."""

    base_run: str = "runs/recsys/demo/base"
    """Trained run (from domains.recsys.train) whose model proposes the candidates and whose data is used."""
    run_name: str = "augment"
    """Output goes to runs/recsys/<run_name>/augmentation/."""
    runs_root: str = "runs"
    """Root folder of run folders."""
    backend: str = "kg"
    """'kg' (offline, answers from the dataset's knowledge graph), 'openai' (chat-completions endpoint) or
    'transformers' (local causal LM from model_path)."""
    tasks: list[str] = field(default_factory=lambda: ["edges", "attributes"])
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
        if not config.model_path:
            raise ValueError("backend 'transformers' needs --model_path (a local causal LM folder)")
        return TransformersBackend(config.model_path)
    raise ValueError(f"unknown backend {config.backend!r}; expected 'kg', 'openai' or 'transformers'")


def augment_from_run(config: AugmentConfig, loaded=None) -> tuple[Path, AugmentationRun]:
    """Loads the base run, proposes candidates, runs the tasks and writes the augmentation folder."""
    from domains.recsys.data import items_by_user
    from domains.recsys.ranking_metrics import top_k_items
    from domains.recsys.recommender import load_run
    from shared.cli import run_dir_for

    loaded = loaded or load_run(config.base_run)
    data = loaded.data
    users_emb, items_emb = loaded.model.user_item_embeddings()
    candidates = top_k_items(
        users_emb, items_emb, items_by_user(data.train, data.n_users, data.n_items), config.candidates_k
    )
    users = np.arange(data.n_users)[: config.max_users] if config.max_users else None
    items = np.arange(data.n_items)[: config.max_items] if config.max_items else None
    backend = make_backend(config, data, loaded.tables)
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
    out = run_dir_for("recsys", config.run_name, config.runs_root) / "augmentation"
    write_augmentation(result, data, out, {"backend": backend.identity, "base_run": str(config.base_run)})
    return out, result


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    from shared.cli import parse_config

    config = parse_config(AugmentConfig, argv, prog="python -m domains.recsys.augment")
    out, result = augment_from_run(config)
    for task, counts in result.summary.items():
        print(
            f"{task}: requested {counts.requested}, answered {counts.answered}, cached {counts.cached}, "
            f"malformed {counts.malformed}, failed {counts.failed}, unsupported {counts.unsupported}"
        )
    print(f"Wrote augmentation to {out}")
    print(f"Next: python -m domains.recsys.train --augmentation {out} --run_name {config.run_name}-model")


if __name__ == "__main__":
    main()
