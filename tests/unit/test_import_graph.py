"""No import cycle in matter_crawler: between its packages, nor between its modules.

Imports are read from the source with :mod:`ast` (nothing is imported), every kind
counted: module level, inside functions, and under ``if TYPE_CHECKING:`` (a cycle
through type hints is still two packages that cannot be read one without the other).
Between the modules of one package, an import under ``if TYPE_CHECKING:`` is left out:
a collaborator naming the class that owns it in a type hint (the spider's helpers)
is the usual shape, and costs nothing at run time.
A package's unit is its first level under ``matter_crawler`` (``matter_crawler.monitoring``
for ``matter_crawler/monitoring/server.py``); a top-level module is a unit of its own.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "matter_crawler"
PACKAGE = PACKAGE_DIR.name

#: (importing module, imported module) -> where: ["path:line", ...]
Edges = dict[tuple[str, str], list[str]]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def imported_modules(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The matter_crawler modules an ``import`` / ``from ... import`` statement names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join([*base, *([node.module] if node.module else [])])
    else:
        prefix = node.module or ""
    # "from .pkg import module" names a module; "from .module import name" names the module
    names = [f"{prefix}.{alias.name}" for alias in node.names]
    submodules = [name for name in names if name in known]
    return submodules or [prefix]


def type_checking_imports(tree: ast.AST) -> set[ast.AST]:
    """The import statements under ``if TYPE_CHECKING:``."""
    found: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            for child in node.body:
                found.update(ast.walk(child))
    return found


def import_edges(unit_of: Callable[[str], str], *, type_hints: bool = True) -> Edges:
    modules = all_modules()
    known = set(modules)
    edges: Edges = defaultdict(list)
    for module, path in modules.items():
        source = unit_of(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        hints = set() if type_hints else type_checking_imports(tree)
        for node in ast.walk(tree):
            if node in hints:
                continue
            for target in imported_modules(node, module, path.name == "__init__.py", known):
                if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
                    continue
                destination = unit_of(target)
                if destination not in (source, PACKAGE):
                    where = f"{path.relative_to(PACKAGE_DIR.parent)}:{node.lineno}"
                    edges[source, destination].append(where)
    return edges


def cycles(edges: Edges) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for source, destination in edges:
        graph[source].add(destination)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(found: list[list[str]], edges: Edges) -> str:
    lines = []
    for component in found:
        lines.append("cycle: " + " <-> ".join(component))
        for (source, destination), where in sorted(edges.items()):
            if source in component and destination in component:
                lines.append(f"  {source} -> {destination}: {', '.join(where)}")
    return "\n".join(lines)


def package_unit(module: str) -> str:
    """``matter_crawler.monitoring.server`` -> ``matter_crawler.monitoring``."""
    return ".".join(module.split(".")[:2])


def test_no_import_cycle_between_packages():
    edges = import_edges(package_unit)
    found = cycles(edges)
    assert not found, describe(found, edges)


def test_no_import_cycle_between_modules():
    edges = import_edges(lambda module: module, type_hints=False)
    found = cycles(edges)
    assert not found, describe(found, edges)


def test_the_graph_sees_relative_imports_and_tells_a_cycle_from_a_chain():
    """The check itself: both directions of a known pair are found, a chain is no cycle."""
    edges = import_edges(package_unit)
    # extensions use monitoring (the exporter, the live page): a real edge it must see
    assert ("matter_crawler.extensions", "matter_crawler.monitoring") in edges
    assert cycles({("a", "b"): ["x"], ("b", "c"): ["y"]}) == []
    assert cycles({("a", "b"): ["x"], ("b", "c"): ["y"], ("c", "a"): ["z"]}) == [["a", "b", "c"]]
    tree = ast.parse("from ..monitoring import server\nfrom .. import settings\n")
    known = {"matter_crawler.monitoring.server", "matter_crawler.settings"}
    found = [
        imported_modules(node, "matter_crawler.extensions.x", False, known) for node in tree.body
    ]
    assert found == [["matter_crawler.monitoring.server"], ["matter_crawler.settings"]]
