"""The package's stages import one way: every import (function-local ones included) is of
an earlier stage or of the module's own stage, and no modules import each other in a circle."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rosetta_lite"
#: the data flow, world -> zoo -> capture -> statistics -> mining -> dictionary ->
#: applications -> evaluation -> book; helpers every stage may use come first
STAGES = [
    ("files", "device"),
    ("world",),
    ("zoo",),
    ("capture",),
    ("train",),
    ("stats",),
    ("mining",),
    ("dictionary",),
    ("applications",),
    ("evaluation",),
    ("bench",),
    ("viz", "explorer"),
    ("book",),
    ("cli",),
    ("__init__", "__main__"),
]
RANK = {stage: rank for rank, names in enumerate(STAGES) for stage in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 2 else parts)


def stage(module: str) -> str:
    """rosetta_lite.mining.loop -> "mining"; the package's own __init__ -> "__init__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def project_imports(path: Path, modules: set[str]) -> list[tuple[int, str]]:
    """(line, imported module) of every import of the package in a file, wherever it stands.

    ``from rosetta_lite.zoo import lite`` imports the module ``rosetta_lite.zoo.lite``;
    ``from rosetta_lite.zoo import load`` imports ``rosetta_lite.zoo``.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("rosetta_lite")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rosetta_lite"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.append((node.lineno, submodule if submodule in modules else node.module))
    return found


def import_graph() -> dict[str, list[tuple[int, str]]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): project_imports(path, modules) for path in paths}


def later_stage_imports(graph: dict[str, list[tuple[int, str]]]) -> list[str]:
    errors = []
    for module, imports in graph.items():
        own = stage(module)
        for line, imported in imports:
            other = stage(imported)
            if other not in RANK:
                errors.append(f"{module}:{line} imports {imported}, of no known stage; add it to STAGES")
            elif RANK[other] > RANK[own]:
                errors.append(f"{module}:{line} imports {imported}: stage {other!r} comes after {own!r}")
    return errors


def circles(graph: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """Every circle of modules found by a depth-first walk, as [a, b, ..., a]."""
    edges = {m: sorted({i for _, i in imports if i in graph and i != m}) for m, imports in graph.items()}
    found, done, path = [], set(), []

    def walk(module: str) -> None:
        if module in path:
            found.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        path.append(module)
        for imported in edges[module]:
            walk(imported)
        path.pop()
        done.add(module)

    for module in edges:
        walk(module)
    return found


def test_every_module_has_a_stage():
    assert all(stage(m) in RANK for m in import_graph()), sorted(m for m in import_graph() if stage(m) not in RANK)


def test_imports_go_one_way():
    errors = later_stage_imports(import_graph())
    assert not errors, "imports against the data flow:\n" + "\n".join(errors)


def test_no_import_circles():
    found = circles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize("graph, expected", [
    ({"rosetta_lite.world": [(3, "rosetta_lite.mining.loop")], "rosetta_lite.mining.loop": []},
     "rosetta_lite.world:3 imports rosetta_lite.mining.loop: stage 'mining' comes after 'world'"),
    ({"rosetta_lite.mining.loop": [(9, "rosetta_lite.stats.moments")], "rosetta_lite.stats.moments": []}, None),
])
def test_the_check_catches_a_backward_import(graph, expected):
    errors = later_stage_imports(graph)
    assert errors == ([expected] if expected else [])


def test_the_check_catches_a_circle():
    graph = {"rosetta_lite.mining.a": [(1, "rosetta_lite.mining.b")],
             "rosetta_lite.mining.b": [(1, "rosetta_lite.mining.a")]}
    assert circles(graph) == [["rosetta_lite.mining.a", "rosetta_lite.mining.b", "rosetta_lite.mining.a"]]
