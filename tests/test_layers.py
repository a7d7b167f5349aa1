"""The shape of ``sequences/``: layered sub-packages, imports one way, no module circle.

Every import counts, those under ``TYPE_CHECKING`` and inside functions included: a circle that
only type checking sees still means no module can be read on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sequences

ROOT = Path(sequences.__file__).parent

# Lowest first. A module may import its own rank and those below it, never one above.
LAYERS: list[tuple[str, ...]] = [
    ("sequences.errors", "sequences.kit", "sequences.mail"),
    ("sequences.settings", "sequences.deps"),
    ("sequences.store",),
    ("sequences.definitions",),
    ("sequences.signals",),
    ("sequences.engine",),
    ("sequences.delivery", "sequences.review"),
    ("sequences.intake",),
    (
        "sequences",
        "sequences.runtime",
        "sequences.embedded",
        "sequences.runner",
        "sequences.worker",
        "sequences.simulation",
    ),
]


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if "migrations" in parts:
            continue  # Alembic scripts are loaded by path, not imported
        name = ".".join(parts).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``sequences`` modules a file imports, resolved to module names."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sequences"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("sequences"))
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _rank(module: str) -> int:
    """The rank of the longest entry of LAYERS that is the module or a package holding it."""
    matches = [
        (len(entry), rank)
        for rank, entries in enumerate(LAYERS)
        for entry in entries
        if module == entry or (entry != "sequences" and module.startswith(entry + "."))
    ]
    assert matches, f"{module} belongs to no layer: add it to LAYERS"
    return max(matches)[1]


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative enough for a package of this size."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_finder_sees_a_circle_when_there_is_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(len(c) for c in _strongly_connected(graph)) == [1, 3]


def test_no_import_circle_among_sequences_modules() -> None:
    circles = [c for c in _strongly_connected(_graph()) if len(c) > 1]
    assert circles == []


def test_a_lower_layer_never_imports_a_higher_one() -> None:
    upward = [
        f"{module} (layer {_rank(module)}) imports {target} (layer {_rank(target)})"
        for module, targets in _graph().items()
        for target in targets
        if _rank(target) > _rank(module)
    ]
    assert upward == []


def test_the_layer_check_would_catch_an_upward_import() -> None:
    assert _rank("sequences.store.tables") < _rank("sequences.engine.flow")
    assert _rank("sequences.intake.esp.ses") == _rank("sequences.intake")


def test_few_loose_modules_and_every_subpackage_says_what_it_owns() -> None:
    loose = [p.name for p in ROOT.glob("*.py") if p.name != "__init__.py"]
    assert len(loose) <= 10, loose
    for package in (p for p in ROOT.iterdir() if (p / "__init__.py").exists()):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and len(doc) > 60, f"{package.name}/__init__.py needs a docstring"
