"""Data-card checker: every card is complete, and every reader and demo generator has a card.

Cards live in ``data_cards/<domain>/<dataset>.md`` in the Hugging Face dataset-card form (YAML front
matter + prose sections). The convention enforced here:

- every card has the required front-matter keys and sections (biomedical cards also a healthsheet), and
  no ``[More Information Needed]`` placeholder;
- every public ``read_*`` function of a domain's library modules (any depth, command modules aside) and
  every ``build_*`` function of its demo-data modules (names containing ``demo``) is listed in some card's
  ``code`` list;
- every dotted name in a ``code`` list is a function (or class) that exists in the code.

Code is inspected with ``ast`` (nothing is imported), so the check is fast and works while domains land.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard

REPO_ROOT = Path(__file__).resolve().parents[2]
CARDS_DIR = REPO_ROOT / "data_cards"

REQUIRED_KEYS = (
    "pretty_name",
    "license",
    "license_url",
    "size_categories",
    "source_datasets",
    "task_categories",
    "modalities",
    "generated",
    "maintenance_status",
    "phi_status",
    "code",
)
REQUIRED_SECTIONS = (
    "Dataset Details",
    "Uses",
    "Dataset Structure",
    "Dataset Creation",
    "Bias, Risks, and Limitations",
    "Citation",
)
BIOMEDICAL_SECTIONS = ("Healthsheet",)
PLACEHOLDER = "[More Information Needed]"
DOTTED_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def card_paths(cards_dir: Path = CARDS_DIR) -> list[Path]:
    """Every ``*.md`` card under ``cards_dir`` (none if the folder does not exist yet)."""
    return sorted(cards_dir.rglob("*.md")) if cards_dir.is_dir() else []


def card_problems(path: Path, repo_root: Path = REPO_ROOT) -> list[str]:
    """Everything wrong with one card, as messages naming the file; empty if the card is complete."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return [f"{path}: no YAML front matter (the file must start with a '---' line)"]
    try:
        card = DatasetCard(text)
    except Exception as error:  # huggingface_hub raises several types for malformed YAML
        return [f"{path}: front matter does not parse: {error}"]
    metadata = card.data.to_dict()
    problems = []
    for key in REQUIRED_KEYS:
        value = metadata.get(key)
        if value is None or (isinstance(value, str | list | dict) and not value):
            problems.append(f"{path}: front matter lacks a value for {key!r}")
    if "generated" in metadata and not isinstance(metadata["generated"], bool):
        problems.append(f"{path}: 'generated' must be true or false; got {metadata['generated']!r}")
    code = metadata.get("code")
    if code is not None and not (isinstance(code, list) and all(isinstance(name, str) for name in code)):
        problems.append(f"{path}: 'code' must be a list of dotted function names; got {code!r}")
    elif code:
        for name in code:
            problems.extend(f"{path}: {problem}" for problem in resolve_problems(name, repo_root))
    sections = section_bodies(card.text)
    cards_dir = repo_root / "data_cards"
    biomedical = path.is_relative_to(cards_dir) and path.relative_to(cards_dir).parts[0] == "biomed"
    for section in REQUIRED_SECTIONS + (BIOMEDICAL_SECTIONS if biomedical else ()):
        if section not in sections:
            problems.append(f"{path}: missing section '## {section}'")
        elif not sections[section].strip():
            problems.append(f"{path}: section '## {section}' is empty")
    if PLACEHOLDER in text:
        problems.append(f"{path}: still contains {PLACEHOLDER!r}")
    return problems


def section_bodies(markdown: str) -> dict[str, str]:
    """``{heading: body}`` for every level-2 heading (the body runs to the next level-2 heading)."""
    bodies: dict[str, str] = {}
    current = None
    for line in markdown.splitlines():
        match = re.match(r"^##\s+(.+?)\s*$", line)
        if match:
            current = match.group(1)
            bodies[current] = ""
        elif current is not None:
            bodies[current] += line + "\n"
    return bodies


def _top_level_names(module_path: Path, kinds: tuple[type, ...]) -> set[str]:
    tree = ast.parse(module_path.read_text(encoding="utf-8"), filename=str(module_path))
    return {node.name for node in tree.body if isinstance(node, kinds)}


def resolve_problems(dotted_name: str, repo_root: Path = REPO_ROOT) -> list[str]:
    """Why ``dotted_name`` does not name a top-level function or class in the repository (empty if it does)."""
    if not DOTTED_NAME.match(dotted_name):
        return [f"code entry {dotted_name!r} is not a dotted name like 'domains.astro.data.read_x'"]
    *module_parts, attribute = dotted_name.split(".")
    module_file = repo_root.joinpath(*module_parts).with_suffix(".py")
    if not module_file.is_file():
        module_file = repo_root.joinpath(*module_parts, "__init__.py")
    if not module_file.is_file():
        return [f"code entry {dotted_name!r}: no module {'.'.join(module_parts)} in the repository"]
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    if attribute not in _top_level_names(module_file, kinds):
        return [f"code entry {dotted_name!r}: {module_file.relative_to(repo_root)} defines no {attribute!r}"]
    return []


def documented_entry_points(repo_root: Path = REPO_ROOT) -> dict[str, list[str]]:
    """``{domain: [dotted names]}`` of the public readers (``read_*``) and demo generators (``build_*``).

    Readers are looked for in every library module of the domain package (subpackages included; command
    modules, which only parse flags and call the library, are left out); generators in its demo-data
    modules (a module name containing ``demo``).
    """
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    found: dict[str, list[str]] = {}
    for domain_dir in sorted((repo_root / "domains").glob("*/")):
        if domain_dir.name.startswith(("_", ".")):
            continue
        names = []
        for module_file in sorted(domain_dir.rglob("*.py")):
            source = module_file.read_text(encoding="utf-8")
            if module_file.name == "__main__.py" or 'if __name__ == "__main__"' in source:
                continue
            prefix = "build_" if "demo" in module_file.stem else "read_"
            dotted = ".".join(module_file.relative_to(repo_root).with_suffix("").parts)
            names += [
                f"{dotted}.{name}"
                for name in sorted(_top_level_names(module_file, functions))
                if name.startswith(prefix)
            ]
        if names:
            found[domain_dir.name] = names
    return found


def listed_code(paths: list[Path]) -> set[str]:
    """Every dotted name in the ``code`` lists of the given cards."""
    names: set[str] = set()
    for path in paths:
        code = DatasetCard(path.read_text(encoding="utf-8")).data.to_dict().get("code") or []
        names.update(name for name in code if isinstance(name, str))
    return names


CARDS = card_paths()
ENTRY_POINTS = documented_entry_points()


@pytest.mark.parametrize("path", CARDS, ids=[str(p.relative_to(CARDS_DIR)) for p in CARDS])
def test_card_is_complete_and_its_code_exists(path):
    problems = card_problems(path)
    assert not problems, "\n".join(problems)


#: While domains land one by one, a domain with no card at all yet is skipped (loudly) instead of
#: failing; set to False once every domain has its cards, so a missing card fails the suite.
ALLOW_DOMAINS_WITHOUT_CARDS = False


@pytest.mark.parametrize("domain", sorted(ENTRY_POINTS))
def test_every_reader_and_demo_generator_has_a_card(domain):
    listed = listed_code(CARDS)
    missing = [name for name in ENTRY_POINTS[domain] if name not in listed]
    if missing and ALLOW_DOMAINS_WITHOUT_CARDS and not card_paths(CARDS_DIR / domain):
        pytest.skip(f"data_cards/{domain}/ has no card yet; still undocumented: {missing}")
    assert not missing, (
        f"these functions of domains/{domain} appear in no data card's 'code' list "
        f"(add them to a card in data_cards/{domain}/): {missing}"
    )


# ----------------------------------------------------------------------- the checker checked


GOOD_CARD = """---
pretty_name: Toy light curves
license: cc-by-4.0
license_url: https://creativecommons.org/licenses/by/4.0/
size_categories: [n<1K]
source_datasets: [original]
task_categories: [feature-extraction]
modalities: [time-series]
generated: true
maintenance_status: actively-maintained
phi_status: none
code: [domains.toy.data.read_toy, domains.toy.demo.build_toy]
---
# Toy light curves
## Dataset Details
Synthetic.
## Uses
Tests.
## Dataset Structure
One row per star.
## Dataset Creation
Generated by build_toy.
## Bias, Risks, and Limitations
Not real stars.
## Citation
None needed.
"""


@pytest.fixture
def toy_repo(tmp_path):
    (tmp_path / "domains" / "toy").mkdir(parents=True)
    (tmp_path / "domains" / "toy" / "data.py").write_text(
        "def read_toy(path):\n    return path\n\ndef _read_private():\n    pass\n\nclass Reader:\n    pass\n"
    )
    (tmp_path / "domains" / "toy" / "demo.py").write_text("def build_toy():\n    pass\n\ndef read_demo():\n    pass\n")
    (tmp_path / "data_cards" / "toy").mkdir(parents=True)
    return tmp_path


def test_checker_accepts_a_complete_card(toy_repo):
    card = toy_repo / "data_cards" / "toy" / "toy.md"
    card.write_text(GOOD_CARD)
    assert card_problems(card, toy_repo) == []
    assert documented_entry_points(toy_repo) == {"toy": ["domains.toy.data.read_toy", "domains.toy.demo.build_toy"]}
    assert set(documented_entry_points(toy_repo)["toy"]) <= listed_code([card])


def test_checker_reports_each_kind_of_problem(toy_repo):
    card = toy_repo / "data_cards" / "toy" / "toy.md"
    broken = (
        GOOD_CARD.replace("license: cc-by-4.0\n", "")
        .replace("generated: true", "generated: maybe")
        .replace("domains.toy.demo.build_toy", "domains.toy.demo.build_missing")
        .replace("## Citation\nNone needed.\n", "## Citation\n[More Information Needed]\n")
        .replace("## Uses\nTests.\n", "")
    )
    card.write_text(broken)
    problems = "\n".join(card_problems(card, toy_repo))
    assert "'license'" in problems
    assert "'generated' must be true or false" in problems
    assert "defines no 'build_missing'" in problems
    assert "missing section '## Uses'" in problems
    assert "[More Information Needed]" in problems
    assert str(card) in problems
    card.write_text("# no front matter\n")
    assert "no YAML front matter" in card_problems(card, toy_repo)[0]


def test_biomedical_cards_need_a_healthsheet(toy_repo):
    card = toy_repo / "data_cards" / "biomed" / "toy.md"
    card.parent.mkdir()
    card.write_text(GOOD_CARD)
    assert card_problems(card, toy_repo) == [f"{card}: missing section '## Healthsheet'"]
    card.write_text(GOOD_CARD + "## Healthsheet\nNo patients; synthetic.\n")
    assert card_problems(card, toy_repo) == []
