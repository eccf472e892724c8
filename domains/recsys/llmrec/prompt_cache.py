"""The on-disk cache of raw augmentation answers, so that a rerun is resumable and idempotent."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from domains.recsys.llmrec.backends import CompletionRequest
from shared.atomic_files import write_text_atomically

logger = logging.getLogger(__name__)


class PromptCache:
    """Raw answers on disk, one JSON file per request key (``<dir>/<key[:2]>/<key>.json``), written atomically.

    The key is the SHA-256 of (backend identity, task, messages, decoding settings).

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
