"""What the augmentation asks a language model, and how its answers are read.

Prompts are the templates in ``domains/recsys/prompts/``:

* ``edges``: given a user's history and the base model's top-k candidates, pick a liked and a disliked
  candidate (``pos::neg``);
* ``attributes``: complete an item's ``director::country::language``;
* ``profiles``: a JSON user profile (age, gender, liked/disliked genre, liked directors, country, language).

The parsers return ``None`` for a malformed answer (the caller counts it and drops it).
"""

from __future__ import annotations

import json
import re
from importlib import resources

from domains.recsys.llmrec.interactions import InteractionData

TASKS = ("edges", "attributes", "profiles")
ATTRIBUTE_FIELDS = ("director", "country", "language")
PROFILE_KEYS = ("age", "gender", "liked genre", "disliked genre", "liked directors", "country", "language")


def prompt_template(name: str) -> str:
    """The text of ``domains/recsys/prompts/<name>.txt``."""
    return resources.files("domains.recsys").joinpath("prompts", f"{name}.txt").read_text(encoding="utf-8")


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
    """Item attributes from the first non-empty line of an answer; ``None`` when malformed.

    Either positional ``director::country::language`` (the LLM prompt's format) or named
    ``name=value|value::name=value`` fields (the offline backend's item-file facts). ``|`` separates several
    values of one field; ``unknown`` fields are dropped.
    """
    line = next((line.strip() for line in answer.splitlines() if line.strip()), "")
    fields = [value.strip() for value in line.split("::")]
    if fields and all("=" in value for value in fields):
        named = {}
        for value in fields:
            name, _, values = value.partition("=")
            parts = [part.strip() for part in values.split("|") if part.strip() and part.strip().lower() != "unknown"]
            if not name.strip() or not name.strip().replace("_", "").isalnum():
                return None
            if parts:
                named[name.strip()] = parts
        return named or None
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
