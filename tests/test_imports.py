"""The package's import graph: no cycles, and nothing installed imports test-only code.

Read with ``ast`` from the source tree, so imports inside functions count too (they
hide a cycle from Python's import machinery but not from the design). Imports under
``if TYPE_CHECKING:`` are left out: they never run. A module named by a string
literal (``importlib.import_module("spatialalign.x")`` or a helper taking the dotted
name) counts as an import of that module.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "python" / "spatialalign"
TESTS_DIR = REPO / "tests"

# the test-only modules that used to live in the package, by their old names
MOVED_TO_TESTS = (
    "spatialalign.detection.tiny",
    "spatialalign.scoring.official",
    "spatialalign.scoring.reference",
)


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line``."""

    source: str
    target: str
    line: int


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every module of the package (``__init__`` files as their package's name)."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _runtime_nodes(tree: ast.AST):
    """Every node except those in the body of an ``if TYPE_CHECKING:`` block."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported_names(path: Path, name: str, is_package: bool) -> list[tuple[tuple[str, ...], int]]:
    """(candidate dotted names, line) of every run-time import in ``path``.

    Relative imports are resolved. ``from a.b import c`` gives the candidates
    ``("a.b.c", "a.b")``: the first that is a module is what gets imported. String
    literals naming a ``spatialalign.`` module in a call's arguments count as well
    (dynamic imports).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if is_package else name.rpartition(".")[0]
    out: list[tuple[tuple[str, ...], int]] = []
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            out += [((alias.name,), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out += [((f"{base}.{alias.name}", base), node.lineno) for alias in node.names]
        elif isinstance(node, ast.Call):
            out += [
                ((arg.value,), node.lineno)
                for arg in node.args
                if isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and arg.value.startswith("spatialalign.")
                and arg.value.replace(".", "").replace("_", "").isalnum()
            ]
    return out


def import_edges(root: Path = PACKAGE_DIR) -> tuple[list[Edge], list[Edge]]:
    """(imports between the package's modules, imports of anything else) under ``root``."""
    modules = package_modules(root)
    internal: list[Edge] = []
    external: list[Edge] = []
    for name, path in modules.items():
        for candidates, line in imported_names(path, name, path.name == "__init__.py"):
            target = next((c for c in candidates if c in modules), candidates[-1])
            if target not in modules:
                external.append(Edge(name, target, line))
                continue
            # importing a.b.c runs a/__init__ and a/b/__init__ first; the importer's own
            # packages are already running, so those are not edges
            own = _ancestors(name)
            for package in [*_ancestors(target), target]:
                if package != name and package not in own:
                    internal.append(Edge(name, package, line))
    return internal, external


def _ancestors(name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b"]``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def find_cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One cycle (as its edges) per strongly connected component with more than one module."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        graph.setdefault(e.source, {}).setdefault(e.target, e)
        graph.setdefault(e.target, {})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:  # Tarjan; the graph is small, recursion is fine
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(graph, set(comp), comp[0]) for comp in components]


def _cycle_in(graph: dict[str, dict[str, Edge]], members: set[str], start: str) -> list[Edge]:
    """A shortest cycle through ``start`` inside one strongly connected component."""
    parent: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w, e in sorted(graph[v].items()):
                if w not in members:
                    continue
                if w == start:
                    path = [e]
                    while path[0].source != start:
                        path.insert(0, parent[path[0].source])
                    return path
                if w not in parent:
                    parent[w] = e
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - SCC guarantees one


def describe(cycle: list[Edge]) -> str:
    return " -> ".join(f"{e.source} (line {e.line})" for e in cycle) + f" -> {cycle[0].source}"


def test_no_import_cycles():
    internal, _ = import_edges()
    cycles = find_cycles(internal)
    assert not cycles, "import cycles in spatialalign:\n" + "\n".join(map(describe, cycles))


def unit(module: str) -> str | None:
    """The sub-package (or top-level module) of ``spatialalign`` a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "spatialalign" else None


def test_no_loops_between_sub_packages():
    """Sub-packages form layers: if ``a`` imports from ``b`` (at any depth, inside
    functions too), nothing in ``b`` imports from ``a``, directly or through others."""
    internal, _ = import_edges()
    units = [
        Edge(unit(e.source), unit(e.target), e.line)
        for e in internal
        if unit(e.source) and unit(e.target) and unit(e.source) != unit(e.target)
    ]
    cycles = find_cycles(units)
    assert not cycles, "sub-packages that import each other:\n" + "\n".join(
        " -> ".join(e.source for e in c) + f" -> {c[0].source}" for c in cycles
    )


def test_package_imports_no_test_code():
    test_modules = {p.stem for p in TESTS_DIR.rglob("*.py")} | {"tests"}
    internal, external = import_edges()
    bad = [
        e
        for e in [*internal, *external]
        if e.target.split(".")[0] in test_modules
        or any(e.target == m or e.target.startswith(m + ".") for m in MOVED_TO_TESTS)
    ]
    assert not bad, "the installed package imports test-only code:\n" + "\n".join(
        f"{e.source} line {e.line}: {e.target}" for e in bad
    )


def test_moved_test_helpers_are_gone_from_the_package():
    modules = package_modules()
    assert not [m for m in MOVED_TO_TESTS if m in modules]


# --------------------------------------------------------------- the checker checks itself


@pytest.fixture
def fake_package(tmp_path):
    def make(files: dict[str, str]) -> Path:
        root = tmp_path / "spatialalign"
        for rel, text in {"__init__.py": "", **files}.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        return root

    return make


def test_checker_finds_a_cycle_hidden_in_a_function(fake_package):
    root = fake_package(
        {
            "a.py": "from spatialalign.b import x\n",
            "b.py": "def x():\n    from spatialalign import a\n",
            "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import spatialalign.a\n",
        }
    )
    internal, _ = import_edges(root)
    cycles = find_cycles(internal)
    assert len(cycles) == 1
    assert describe(cycles[0]) == (
        "spatialalign.a (line 1) -> spatialalign.b (line 2) -> spatialalign.a"
    )


def test_checker_ignores_type_checking_and_sees_dynamic_and_relative_imports(fake_package):
    root = fake_package(
        {
            "sub/__init__.py": "from .m import f\n",
            "sub/m.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from spatialalign.sub import f\n"
                "def f():\n    return __import__('importlib').import_module('spatialalign.n')\n"
            ),
            "n.py": "from . import sub\n",
        }
    )
    internal, _ = import_edges(root)
    pairs = {(e.source, e.target) for e in internal}
    assert pairs == {
        ("spatialalign.sub", "spatialalign.sub.m"),
        ("spatialalign.sub.m", "spatialalign.n"),
        ("spatialalign.n", "spatialalign.sub"),
    }
    assert len(find_cycles(internal)) == 1


def test_checker_counts_the_packages_an_import_runs(fake_package):
    # p/__init__ re-exports from q.x, and q.x imports p.y, which runs p/__init__ first
    root = fake_package(
        {
            "p/__init__.py": "from spatialalign.q.x import f\n",
            "p/y.py": "g = 1\n",
            "q/__init__.py": "",
            "q/x.py": "from spatialalign.p.y import g\n\ndef f():\n    return g\n",
            # a package re-exporting its own submodules, which import siblings: no loop
            "r/__init__.py": "from spatialalign.r.s import h\n",
            "r/s.py": "from spatialalign.r.t import k as h\n",
            "r/t.py": "k = 1\n",
        }
    )
    internal, _ = import_edges(root)
    assert [describe(c) for c in find_cycles(internal)] == [
        "spatialalign.p (line 1) -> spatialalign.q.x (line 1) -> spatialalign.p"
    ]
