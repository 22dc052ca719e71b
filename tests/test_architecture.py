"""The shape of the package (issue 12): no import cycle, layers that only look down, no
module over 600 lines, test-data builders outside the wheel.

The import graph is read from the source with :mod:`ast` (every ``import`` statement, those
inside functions included), not from what Python happens to have imported. Imports under
``if TYPE_CHECKING:`` are left out: they never run (they name types for mypy), and a module
that needs a type of a module above it imports it that way.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "dicomveil"
MAX_LINES = 600

# Which top-level parts of the package each part may import (besides itself). A part
# missing here may import nothing of the package but errors and _version.
BASE = {"errors", "_version", "validation"}
_BELOW_GATEWAY = {
    "standard",
    "identity",
    "io",
    "cleaners",
    "profiles",
    "engine",
    "runs",
    "qc",
    "qc.verify",
}
LAYERS: dict[str, set[str]] = {
    "standard": set(),
    "identity": {"standard"},
    "io": {"standard"},
    "cleaners": {"standard", "identity", "io"},
    "profiles": {"standard", "cleaners"},  # a profile configures the cleaners
    "engine": {"standard", "identity", "io", "cleaners", "profiles"},
    # The verifier reads the originals and the outputs with its own reader and knows the
    # profiles: never the engine, whose work it checks. The release gate (runs) uses it.
    "qc.verify": {"standard", "identity", "io", "cleaners", "profiles"},
    "runs": {"standard", "identity", "io", "cleaners", "profiles", "engine", "qc.verify"},
    "qc": {"standard", "identity", "io", "cleaners", "profiles", "engine", "runs", "qc.verify"},
    "gateway": _BELOW_GATEWAY,
    # The review application: a front end of the audit trail, beside the gateway.
    "review": _BELOW_GATEWAY,
    "cli": _BELOW_GATEWAY | {"gateway", "review"},
    # The program (the console script, python -m dicomveil): loads the command line, after
    # starting a local Dask cluster's fork server when it is asked for one (runs.forkserver).
    "_command": {"cli", "runs"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` but the bodies of ``if TYPE_CHECKING:`` blocks."""
    for child in ast.iter_child_nodes(tree):
        if _is_type_checking(child):
            assert isinstance(child, ast.If)
            for other in child.orelse:
                yield other
                yield from _nodes(other)
            continue
        yield child
        yield from _nodes(child)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("dicomveil"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    yield sub
                elif target in modules:
                    yield target


def graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in its source)."""
    modules = _modules()
    return {
        name: {t for t in _imports(name, path, modules) if t != name}
        for name, path in modules.items()
    }


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    if parts[1:3] == ["qc", "verify"]:
        return "qc.verify"  # a layer of its own (see LAYERS)
    return parts[1] if len(parts) > 1 else ""


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_inside_functions_count_and_type_checking_ones_do_not() -> None:
    code = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from dicomveil.engine import Engine\n"
        "def f():\n    from dicomveil.profiles import Profile\n"
    )
    names = {
        n.module for n in _nodes(ast.parse(code)) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert names == {"typing", "dicomveil.profiles"}


def test_no_import_cycle() -> None:
    assert _cycles(graph()) == []


def test_layers_only_import_downwards() -> None:
    wrong = []
    for module, targets in graph().items():
        part = _part(module)
        if part not in LAYERS:
            continue
        allowed = LAYERS[part] | BASE | {part}
        wrong += [f"{module} -> {t}" for t in sorted(targets) if _part(t) not in allowed]
    assert wrong == []


def test_every_part_is_placed_in_a_layer() -> None:
    parts = {_part(m) for m in _modules()} - {""}
    assert parts - set(LAYERS) - BASE - {"__main__"} == set()


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_module_over_600_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_test_data_builders_are_not_in_the_wheel() -> None:
    names = {p.stem for p in PACKAGE.rglob("*.py")}
    assert not names & {"synthetic", "textimages"}
