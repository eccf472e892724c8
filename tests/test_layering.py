"""The import layering of the product, read from the code (every import, including those inside functions).

Rules (GUIDE.md, "Layout"): the core (``shared``) imports no domain and no ``apps``; a domain imports no
other domain; no module imports a command module (one with an ``if __name__ == "__main__"`` block;
``__main__.py`` files are commands too and are importable by nobody); no import cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_PACKAGES = ("shared", "domains", "apps")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    return {module_name(p): p for top in PRODUCT_PACKAGES for p in sorted((ROOT / top).rglob("*.py"))}


def is_command(path: Path, tree: ast.Module) -> bool:
    if path.name == "__main__.py":
        return True
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)}
            constants = {n.value for n in ast.walk(node.test) if isinstance(n, ast.Constant)}
            if "__name__" in names and "__main__" in constants:
                return True
    return False


def imported_modules(name: str, path: Path, tree: ast.Module, known: dict[str, Path]) -> set[str]:
    """Product modules that ``name`` imports (``from a.b import c`` counts as ``a.b.c`` when that is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            targets.add(source)
            targets.update(f"{source}.{alias.name}" for alias in node.names)
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def domain_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "domains" and len(parts) > 1 else None


def import_graph() -> tuple[dict[str, set[str]], set[str]]:
    known = product_modules()
    graph, commands = {}, set()
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = imported_modules(name, path, tree, known)
        if is_command(path, tree):
            commands.add(name)
    return graph, commands


def layering_violations(graph: dict[str, set[str]], commands: set[str]) -> list[str]:
    """Every broken rule, one line each."""
    problems = []
    for name, imports in sorted(graph.items()):
        for target in sorted(imports):
            if name.split(".")[0] == "shared" and target.split(".")[0] in ("domains", "apps"):
                problems.append(f"core imports product code: {name} -> {target}")
            if domain_of(name) and domain_of(target) and domain_of(name) != domain_of(target):
                problems.append(f"domain imports another domain: {name} -> {target}")
            if target in commands:
                problems.append(f"command module imported: {name} -> {target}")
    problems.extend(f"import cycle: {' -> '.join(cycle)}" for cycle in import_cycles(graph))
    return problems


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One representative cycle per strongly connected component of size > 1 (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component) + [sorted(component)[0]])
    return components


def test_product_import_layering() -> None:
    graph, commands = import_graph()
    assert commands, "no command modules found: the scan is broken"
    assert layering_violations(graph, commands) == []


@pytest.mark.parametrize(
    ("graph", "commands", "expected"),
    [
        ({"shared.a": {"domains.x.b"}, "domains.x.b": set()}, set(), "core imports product code"),
        ({"shared.a": {"apps.page"}, "apps.page": set()}, set(), "core imports product code"),
        ({"domains.x.a": {"domains.y.b"}, "domains.y.b": set()}, set(), "domain imports another domain"),
        ({"apps.page": {"domains.x.train"}, "domains.x.train": set()}, {"domains.x.train"}, "command module imported"),
        ({"domains.x.a": {"domains.x.b"}, "domains.x.b": {"domains.x.a"}}, set(), "import cycle"),
    ],
)
def test_each_rule_is_caught(graph: dict[str, set[str]], commands: set[str], expected: str) -> None:
    problems = layering_violations(graph, commands)
    assert len(problems) == 1 and problems[0].startswith(expected)


def test_imports_inside_functions_and_relative_imports_are_read(tmp_path: Path) -> None:
    source = "def f():\n    from .train import main\n    import domains.y.data\n"
    tree = ast.parse(source)
    known = {"domains.x.helper": tmp_path, "domains.x.train": tmp_path, "domains.y.data": tmp_path}
    found = imported_modules("domains.x.helper", tmp_path / "helper.py", tree, known)
    assert found == {"domains.x.train", "domains.y.data"}


def test_main_block_and_dunder_main_are_commands(tmp_path: Path) -> None:
    assert is_command(tmp_path / "train.py", ast.parse('if __name__ == "__main__":\n    main()\n'))
    assert is_command(tmp_path / "__main__.py", ast.parse("main()\n"))
    assert not is_command(tmp_path / "model.py", ast.parse("x = '__main__'\n"))
