"""No import cycle inside ``thinkflow``, at file level and at package level (issue 13 §4).

What counts as an import: **every** import statement of a module of ``src/thinkflow``, read statically with
``ast`` — module-level ones, those inside functions (lazy imports) and those under ``if TYPE_CHECKING:``.
The usual, narrower definition (only what runs at import time) finds no cycle here, yet the cycles issue 13
names are real: ``data/build -> sources -> sources/synthetic -> data/synthetic -> build`` goes through
function-level imports and ``train/common <-> train/launch`` through a ``TYPE_CHECKING`` one. A lazy import
postpones a dependency, it does not remove it: two modules that import each other cannot be read, tested or
moved apart, whenever Python happens to load them.

- **file level**: modules (``thinkflow.data.build``; a package is its ``__init__``).
- **package level**: ``thinkflow.X`` for each subpackage, and each top-level module on its own.

``from P import N`` is an edge to the module ``P.N`` when that is a module, else to ``P``; ``import a.b`` is an
edge to ``a.b`` (the parent packages it initialises on the way are not counted, as in import-linter and
grimp). Cycles are the strongly connected components (Tarjan); each is printed with one shortest cycle.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "thinkflow"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """The ``thinkflow`` modules that module ``name`` imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import a.b.c` of a name that is no module: its package
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph(level: str) -> dict[str, set[str]]:
    """The import graph between files (``level="file"``) or between packages (``level="package"``)."""
    files = {name: imported_modules(name) for name in MODULES}
    if level == "file":
        return files

    def pkg(name: str) -> str:
        return ".".join(name.split(".")[:2])

    packages: dict[str, set[str]] = {pkg(n): set() for n in files}
    for name, targets in files.items():
        packages[pkg(name)] |= {pkg(t) for t in targets} - {pkg(name)}
    return packages


def strongly_connected(g: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components of more than one node, i.e. the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(g.get(child, ())))))
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
                    found.append(sorted(component))
    return found


def shortest_cycle(g: dict[str, set[str]], component: list[str]) -> list[str]:
    """One shortest cycle inside ``component`` (breadth-first from its first node back to itself)."""
    members, start = set(component), component[0]
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(g[node] & members):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return component


def describe(g: dict[str, set[str]]) -> str:
    cycles = strongly_connected(g)
    return "\n".join(
        f"  {len(c)} modules: {', '.join(c)}\n    e.g. {' -> '.join(shortest_cycle(g, c))}" for c in cycles
    )


def test_the_graph_sees_every_kind_of_import() -> None:
    """Module-level, ``from P import module`` and function-level (lazy) imports are all edges."""
    assert len(MODULES) > 50 and "thinkflow.config" in MODULES
    assert "thinkflow.errors" in imported_modules("thinkflow.config")
    assert "thinkflow.config" in imported_modules("thinkflow.cli.core")
    assert {"thinkflow.cli.data", "thinkflow.cli.core"} <= imported_modules("thinkflow.cli")  # from P import mod
    assert "thinkflow.train.grpo" in imported_modules("thinkflow.cli.stages")  # inside a function


def test_tarjan_finds_cycles_and_only_cycles() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert strongly_connected(g) == [["a", "b", "c"]]
    assert shortest_cycle(g, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_no_import_cycle_between_files() -> None:
    g = graph("file")
    assert not strongly_connected(g), "import cycles between thinkflow modules:\n" + describe(g)


def test_no_import_cycle_between_packages() -> None:
    g = graph("package")
    assert not strongly_connected(g), "import cycles between thinkflow packages:\n" + describe(g)
