"""The package's imports go one way: front ends -> the work -> the base, with no circle.

Read from the source (function-level imports included), so a circle that only
closes when some command runs is found too.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fruitkeras"
FRONT_ENDS = {"fruitkeras.cli", "fruitkeras.webapp", "fruitkeras.page_service"}


def module_imports():
    """{module: the package's modules it imports anywhere in its source}."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        graph[name] = {other for other in found if other in modules and other not in (name, "fruitkeras")}
    return graph


def circles(graph):
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = set()
            while not group or module not in group:
                group.add(stack.pop())
            on_stack.difference_update(group)
            if len(group) > 1:
                groups.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    return groups


def test_the_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_package():
    graph = module_imports()
    assert "fruitkeras.runs" in graph["fruitkeras.fit_familiarity"]  # the reader sees function-level imports
    assert circles(graph) == []


@pytest.mark.parametrize("front_end", sorted(FRONT_ENDS))
def test_only_front_ends_import_front_ends(front_end):
    importers = {module for module, imported in module_imports().items() if front_end in imported}
    assert importers <= FRONT_ENDS, importers
