"""The package's layering holds: imports only point down, no module imports itself in a circle, the
top level stays small, and no module grows past one idea's size (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wsseg

PACKAGE = Path(wsseg.__file__).parent

#: Each folder (or top-level module) of wsseg and its layer: a module may import its own folder and
#: any folder of a lower layer, never one of its own layer or above.
LAYERS: dict[str, int] = {
    "errors": 0,
    "structures": 0,
    "fileio": 0,
    "progress": 0,
    "data": 1,
    "models": 1,
    "methods": 2,
    "store": 3,
    "training": 4,
    "stages": 5,
    "curation": 6,
    "demo": 6,
    "views": 7,
    "jobs": 7,
    "bench": 8,
    "cli_measure": 9,
    "cli": 10,
}
#: The command line imports its commands inside them, so ``wsseg --help`` starts without torch.
LAZY_IMPORTS_ALLOWED = {"wsseg.cli"}


def modules(root: Path, name: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at ``root`` named ``name``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = (name, *path.relative_to(root).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(mods: dict[str, Path], name: str) -> list[tuple[str, str, bool]]:
    """(importer, imported module, inside a function) for every import of the package by itself."""

    def resolve(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    found = []
    for module, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        nested = {
            id(node)
            for fn in ast.walk(tree)
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
            for node in ast.walk(fn)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                    for a in node.names
                ]
            else:
                continue
            for target in targets:
                if target == name or target.startswith(name + "."):
                    resolved = resolve(target)
                    if resolved and resolved not in (module, name):
                        found.append((module, resolved, id(node) in nested))
    return found


def folder(module: str) -> str:
    """The layer key of a module: its folder under the package, or its own name at the top
    (``python -m wsseg`` is the command line's own entry point)."""
    key = module.split(".")[1]
    return "cli" if key == "__main__" else key


def upward(edges: list[tuple[str, str, bool]], layers: dict[str, int]) -> list[str]:
    return sorted(
        f"{a} -> {b}"
        for a, b, _ in edges
        if folder(a) != folder(b) and layers[folder(b)] >= layers[folder(a)]
    )


def circles(edges: list[tuple[str, str, bool]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def edges() -> list[tuple[str, str, bool]]:
    return imports(modules(PACKAGE, "wsseg"), "wsseg")


def test_every_folder_has_a_layer() -> None:
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert names - {"__init__", "__main__", "__pycache__"} <= set(LAYERS), (
        "a new folder needs a layer in LAYERS"
    )


def test_imports_only_point_down(edges: list[tuple[str, str, bool]]) -> None:
    assert upward(edges, LAYERS) == []


def test_no_import_circles(edges: list[tuple[str, str, bool]]) -> None:
    assert circles(edges) == []


def test_imports_inside_functions_only_in_the_command_line(edges: list[tuple[str, str, bool]]) -> None:
    assert sorted({f"{a} -> {b}" for a, b, nested in edges if nested and a not in LAZY_IMPORTS_ALLOWED}) == []


def test_the_core_never_imports_streamlit() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.split(".")[0] == "streamlit" for n in names), path


def test_a_small_top_level_and_no_module_past_500_lines() -> None:
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 8, top
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert long == {}


def test_the_checks_find_a_planted_circle_and_an_upward_arrow(tmp_path: Path) -> None:
    """The checker itself: on a tiny package with one circle and one upward import, both are found."""
    pkg = tmp_path / "toy"
    (pkg / "low").mkdir(parents=True)
    (pkg / "high").mkdir()
    for init in ("__init__.py", "low/__init__.py", "high/__init__.py"):
        (pkg / init).write_text("")
    (pkg / "low" / "a.py").write_text("from toy.low.b import x\nfrom toy.high import c\n")
    (pkg / "low" / "b.py").write_text("def f():\n    from toy.low.a import y\nx = 1\n")
    (pkg / "high" / "c.py").write_text("z = 1\n")
    edges = imports(modules(pkg, "toy"), "toy")
    assert upward(edges, {"low": 0, "high": 1}) == ["toy.low.a -> toy.high.c"]
    assert circles(edges) == [["toy.low.a", "toy.low.b"]]
    assert [(a, b) for a, b, nested in edges if nested] == [("toy.low.b", "toy.low.a")]
