"""Answer sources for LLM augmentation: an OpenAI-compatible HTTP endpoint, a local transformers causal LM,
and an offline knowledge-graph backend that derives answers from real KG triples (no language model).

Every backend answers a :class:`CompletionRequest` (chat messages plus decoding settings, and a structured
``payload`` describing the same question) with a text answer in the task's format, or ``None`` when it cannot
answer that task. Transport failures that survive the retries raise :class:`BackendUnavailable`.
"""

from __future__ import annotations

import collections
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

RETRY_STATUS_CODES = (408, 409, 425, 429, 500, 502, 503, 504)


@dataclass
class CompletionRequest:
    """One question for a backend.

    Attributes:
        task: ``edges``, ``attributes`` or ``profiles``.
        messages: Chat messages ``[{"role": ..., "content": ...}]``.
        temperature: Sampling temperature (0: greedy).
        top_p: Nucleus sampling mass.
        max_tokens: Longest answer in tokens.
        payload: The same question in structured form (item/user indices, candidates) for non-LLM backends;
            not sent to language models.
    """

    task: str
    messages: list[dict[str, str]]
    temperature: float = 0.6
    top_p: float = 0.1
    max_tokens: int = 128
    payload: dict[str, Any] = field(default_factory=dict)


class BackendUnavailable(RuntimeError):
    """The backend gave no answer after all retries (network, timeouts, server errors)."""


class AugmentationBackend(Protocol):
    """What the augmentation command needs from an answer source."""

    identity: str
    """Stable description of the backend and model; part of every cache key."""

    def complete(self, request: CompletionRequest) -> str | None:
        """The answer text, or ``None`` when this backend does not handle ``request.task``."""
        ...


class ChatCompletionsBackend:
    """Any OpenAI-compatible ``POST {base_url}/chat/completions`` endpoint (vLLM, llama.cpp, Ollama, hosted).

    Retries (connection errors, read timeouts, HTTP 408/409/425/429/5xx) use urllib3's ``Retry`` with
    exponential backoff and honour ``Retry-After``.

    Args:
        base_url: Endpoint root, e.g. ``http://127.0.0.1:8000/v1``.
        model: Model name sent in the request.
        api_key: Bearer token (``None``: no Authorization header).
        timeout_s: Connect/read timeout per attempt, seconds.
        max_retries: Retries after the first attempt.
        backoff_s: Backoff factor, seconds (waits ``backoff_s · 2^(n−1)``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
    ) -> None:
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout_s = timeout_s
        self.identity = f"chat-completions:{base_url.rstrip('/')}:{model}"
        retry = Retry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            backoff_factor=backoff_s,
            status_forcelist=RETRY_STATUS_CODES,
            allowed_methods=None,  # POST is safe to repeat here: a completion has no side effects
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def complete(self, request: CompletionRequest) -> str | None:
        """Sends the chat messages and returns ``choices[0].message.content``.

        Raises:
            BackendUnavailable: No usable HTTP answer after the retries (or a non-retryable HTTP error).
            ValueError: The HTTP answer is not a chat completion (counted as malformed by the caller).
        """
        import requests

        body = {
            "model": self.model,
            "messages": request.messages,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
        }
        try:
            response = self.session.post(self.url, json=body, timeout=self.timeout_s)
        except requests.RequestException as error:
            raise BackendUnavailable(
                f"{self.url}: no answer after retries ({type(error).__name__}: {error})"
            ) from error
        if response.status_code >= 400:
            raise BackendUnavailable(f"{self.url}: HTTP {response.status_code}: {response.text[:200]!r}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise ValueError(f"{self.url}: answer is not a chat completion: {response.text[:200]!r}") from error
        if not isinstance(content, str):
            raise ValueError(f"{self.url}: message content is not text: {content!r}")
        return content

    def close(self) -> None:
        """Closes the HTTP session."""
        self.session.close()


class TransformersBackend:
    """A local causal language model loaded with transformers from a folder.

    Uses the tokenizer's chat template when it has one, else ``role: content`` lines ending in ``assistant:``.
    Sampling is seeded per request, so answers are reproducible.

    Args:
        model_path: Folder with ``config.json``, weights and tokenizer files.
        device: ``auto`` or a torch device string.
        seed: Base seed of sampling.
    """

    def __init__(self, model_path: str, device: str = "auto", seed: int = 0) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from shared.device import pick_device

        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path).to(self.device).eval()
        self.seed = seed
        self.identity = f"transformers:{model_path}"

    def _input_ids(self, messages: list[dict[str, str]]):
        if getattr(self.tokenizer, "chat_template", None):
            encoded = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            return encoded["input_ids"]
        text = "\n".join(f"{message['role']}: {message['content']}" for message in messages) + "\nassistant:"
        return self.tokenizer(text, return_tensors="pt")["input_ids"]

    def complete(self, request: CompletionRequest) -> str | None:
        """Generates up to ``request.max_tokens`` new tokens and returns them decoded."""
        import torch

        input_ids = self._input_ids(request.messages)
        limit = getattr(self.model.config, "max_position_embeddings", None) or getattr(
            self.model.config, "n_positions", None
        )
        if limit:
            # Keep the end of an over-long prompt: the instructions and answer format come last.
            input_ids = input_ids[:, -max(1, limit - request.max_tokens) :]
        input_ids = input_ids.to(self.device)
        torch.manual_seed(self.seed)
        sampling = request.temperature > 0
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            output = self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=request.max_tokens,
                do_sample=sampling,
                temperature=request.temperature if sampling else None,
                top_p=request.top_p if sampling and request.top_p > 0 else None,
                pad_token_id=pad,
            )
        return self.tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)


class KnowledgeGraphBackend:
    """The offline backend: answers derived from the dataset's own files — no language model involved.

    * ``edges``: KG-overlap preference. Each candidate is scored by how many KG facts (``relation=entity``) it
      shares with the user's history, counted with multiplicity over the history; the highest-scoring
      candidate is the positive, the lowest the negative (ties: the base model's order).
    * ``attributes`` with ``item_facts`` (the default of :func:`~domains.recsys.llmrec.augmentation.make_backend`):
      the item's genres, release decade and title words from the ``.item`` file, as
      ``genre=…|…::decade=…::title_word=…|…``. These are not among the side attributes the model already has
      (the KG's director/country/language). Without ``item_facts``: the KG director/country/language
      (``director::country::language``), i.e. the side attributes again (kept for older caches and tests).
    * ``profiles`` with ``item_facts``: a profile summarised from the user's training history (liked genres:
      the most frequent genres the user watches more than the catalogue share, with the commonest decade;
      disliked genres: common catalogue genres the user watches at under a third of their share) plus age
      and gender from the ``.user`` file when it has them; the rest ``unknown``. Without ``item_facts``:
      not answered.

    Args:
        item_raw_ids: Raw id of each item index (answers use the ids shown in prompts).
        item_entities: Per item, its KG facts ``relation=entity``.
        item_attributes: Per item, attribute name → entities (director/country/language).
        item_facts: Per item, ``genre``/``decade``/``title_word`` from the item file (or ``None``).
        user_facts: Per user index, ``age``/``gender``/``occupation`` from the user file (or ``None``).
    """

    def __init__(
        self,
        item_raw_ids: list[str],
        item_entities: list[set[str]],
        item_attributes: list[dict[str, list[str]]],
        item_facts: list[dict[str, list[str]]] | None = None,
        user_facts: list[dict[str, str]] | None = None,
    ) -> None:
        self.item_raw_ids = item_raw_ids
        self.item_entities = item_entities
        self.item_attributes = item_attributes
        self.item_facts = item_facts
        self.user_facts = user_facts
        self.identity = "knowledge-graph-overlap:v1" if item_facts is None else "offline-kg-edges-item-file:v2"
        self.genre_share: dict[str, float] = {}
        if item_facts:
            counts = collections.Counter(genre for facts in item_facts for genre in facts.get("genre", []))
            total = sum(counts.values()) or 1
            self.genre_share = {genre: count / total for genre, count in counts.items()}

    def complete(self, request: CompletionRequest) -> str | None:
        """Answers ``edges``, ``attributes`` and (with item facts) ``profiles``; ``None`` for anything else."""
        payload = request.payload
        if request.task == "attributes":
            if self.item_facts is not None:
                facts = self.item_facts[payload["item"]]
                if not facts:
                    return None
                return "::".join(f"{name}={'|'.join(values)}" for name, values in facts.items())
            attributes = self.item_attributes[payload["item"]]
            if not attributes:
                return None
            fields = ["|".join(attributes.get(name, [])) or "unknown" for name in ("director", "country", "language")]
            return "::".join(fields)
        if request.task == "edges":
            candidates: list[int] = payload["candidates"]
            if len(candidates) < 2:
                return None
            profile = collections.Counter(fact for item in payload["history"] for fact in self.item_entities[item])
            scores = [sum(profile[fact] for fact in self.item_entities[item]) for item in candidates]
            best = max(range(len(candidates)), key=lambda position: (scores[position], -position))
            worst = min(range(len(candidates)), key=lambda position: (scores[position], -position))
            if best == worst:
                return None
            return f"{self.item_raw_ids[candidates[best]]}::{self.item_raw_ids[candidates[worst]]}"
        if request.task == "profiles" and self.item_facts is not None:
            return self._profile(payload["user"], payload.get("all_history", payload["history"]))
        return None

    def _profile(self, user: int, history: list[int]) -> str | None:
        genres = collections.Counter(genre for item in history for genre in self.item_facts[item].get("genre", []))
        decades = collections.Counter(decade for item in history for decade in self.item_facts[item].get("decade", []))
        if not genres:
            return None
        total = sum(genres.values())
        lift = {genre: genres[genre] / total / self.genre_share[genre] for genre in genres}
        liked = [genre for genre, _ in genres.most_common() if lift[genre] >= 1.0][:3] or [genres.most_common(1)[0][0]]
        common = [genre for genre, share in self.genre_share.items() if share >= 0.03]
        disliked = sorted(
            (genre for genre in common if genres.get(genre, 0) / total < self.genre_share[genre] / 3),
            key=lambda genre: (genres.get(genre, 0) / total / self.genre_share[genre], genre),
        )[:2]
        liked_text = ", ".join(liked)
        if decades:
            liked_text += f" (mostly {decades.most_common(1)[0][0]} films)"
        user_facts = self.user_facts[user] if self.user_facts else {}
        profile = {
            "age": user_facts.get("age", "unknown"),
            "gender": user_facts.get("gender", "unknown"),
            "liked genre": liked_text,
            "disliked genre": ", ".join(disliked) or "none",
            "liked directors": "unknown",
            "country": "unknown",
            "language": "unknown",
        }
        return json.dumps(profile)
