"""The package's stages import one way: every import (function-local ones included) is of
an earlier stage or of the module's own stage, no modules import each other in a circle, and
no module takes another module's private names (what a module shares it names without "_")."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rosetta_lite"
#: the data flow, world -> zoo -> capture -> statistics -> mining -> dictionary ->
#: applications -> evaluation -> book; helpers every stage may use come first
STAGES = [
    ("files", "device", "progress"),
    ("world",),
    ("zoo",),
    ("capture",),
    ("stats",),
    ("mining",),
    ("dictionary",),
    ("applications",),
    ("evaluation",),
    ("train",),  # trains the zoo; no stage of the pipeline may need training code
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


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def dotted(node: ast.expr) -> str | None:
    """``a.b.c`` of a chain of names, None for anything else (a call, a subscript)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = dotted(node.value)
        return owner and f"{owner}.{node.attr}"
    return None


def private_uses(source: str, modules: set[str]) -> list[tuple[int, str]]:
    """(line, name) of every private name a file takes from a module of the package.

    Both ``from rosetta_lite.zoo.hub import _state_dict`` and ``hub._state_dict`` (after
    ``from rosetta_lite.zoo import hub`` or ``import rosetta_lite.zoo.hub as hub``) count;
    dunders do not, nor private attributes of objects (only modules are resolved).
    """
    modules = modules | {"rosetta_lite"}
    tree = ast.parse(source)
    bound: dict[str, str] = {}  # local name -> the module it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("rosetta_lite"):
                    bound[alias.asname or "rosetta_lite"] = alias.name if alias.asname else "rosetta_lite"
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rosetta_lite"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if is_private(alias.name):
                    found.append((node.lineno, name))
                elif name in modules:
                    bound[alias.asname or alias.name] = name
    for node in ast.walk(tree):
        owner = dotted(node.value) if isinstance(node, ast.Attribute) and is_private(node.attr) else None
        if owner:
            head, _, rest = owner.partition(".")
            module = ".".join(filter(None, [bound.get(head), rest]))
            if head in bound and module in modules:
                found.append((node.lineno, f"{module}.{node.attr}"))
    return sorted(found)


def private_imports() -> list[str]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return [f"{module_name(path)}:{line} uses {name}" for path in paths
            for line, name in private_uses(path.read_text(), modules)]


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


def test_no_module_takes_another_modules_private_names():
    errors = private_imports()
    assert not errors, "private names used across modules (make them public or use the public one):\n" + \
        "\n".join(errors)


MODULES = {"rosetta_lite.zoo", "rosetta_lite.zoo.hub", "rosetta_lite.files"}


@pytest.mark.parametrize("source, expected", [
    ("from rosetta_lite.zoo.hub import cached_download, _state_dict", [(1, "rosetta_lite.zoo.hub._state_dict")]),
    ("from rosetta_lite.zoo import hub\nhub._state_dict()", [(2, "rosetta_lite.zoo.hub._state_dict")]),
    ("import rosetta_lite.zoo.hub as h\nh._offline_error", [(2, "rosetta_lite.zoo.hub._offline_error")]),
    ("import rosetta_lite.zoo.hub\nrosetta_lite.zoo.hub._x", [(2, "rosetta_lite.zoo.hub._x")]),
    ("def f():\n    from rosetta_lite import files\n    return files._tmp", [(3, "rosetta_lite.files._tmp")]),
    ("from rosetta_lite.zoo import hub\nhub.__name__, hub.cached_download", []),
    ("from rosetta_lite.zoo.hub import cached_download\ncached_download._cache", []),  # a function, not a module
    ("import torch\ntorch._C", []),
    ("def _own(): pass\n_own()", []),
])
def test_the_check_catches_a_private_name(source, expected):
    assert private_uses(source, MODULES) == expected


MOST_PARAMETERS = 8
#: public functions allowed more than MOST_PARAMETERS for now, each with why it is not folded yet
TOO_MANY_PARAMETERS: dict[str, str] = {}


def public_parameters(source: str, module: str) -> dict[str, tuple[list[ast.arg], list[ast.arg]]]:
    """{"module.function" or "module.Class.method": (named, starred) parameters} of every public function.

    Named: the positional and keyword-only ones, without a method's self or cls; starred:
    ``*args`` and ``**kwargs``. Functions inside functions and everything in a private
    class are not public.
    """
    found = {}

    def walk(node: ast.AST, prefix: str, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef) and not is_private(child.name):
                walk(child, f"{prefix}.{child.name}", True)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and not is_private(child.name):
                args = child.args
                named = args.posonlyargs + args.args + args.kwonlyargs
                if in_class and named[:1] and named[0].arg in ("self", "cls"):
                    named = named[1:]
                found[f"{prefix}.{child.name}"] = (named, [a for a in (args.vararg, args.kwarg) if a])

    walk(ast.parse(source), module, False)
    return found


def parameter_counts(source: str, module: str) -> dict[str, int]:
    """{"module.function": parameters} of every public function, ``*args`` and ``**kwargs`` left out."""
    return {name: len(named) for name, (named, _) in public_parameters(source, module).items()}


def package_parameter_counts() -> dict[str, int]:
    counts = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != PACKAGE / "cli.py":  # the command line mirrors its flags
            counts.update(parameter_counts(path.read_text(), module_name(path)))
    return counts


def test_no_public_function_takes_more_than_eight_parameters():
    over = {name: n for name, n in package_parameter_counts().items() if n > MOST_PARAMETERS}
    new = sorted(f"{name}: {n}" for name, n in over.items() if name not in TOO_MANY_PARAMETERS)
    assert not new, f"public functions with more than {MOST_PARAMETERS} parameters (fold them into an options " \
        "dataclass, as mine(..., options=MiningOptions(), **changes) does):\n" + "\n".join(new)


def test_the_parameter_allow_list_holds_only_functions_still_over():
    counts = package_parameter_counts()
    stale = sorted(name for name in TOO_MANY_PARAMETERS if counts.get(name, 0) <= MOST_PARAMETERS)
    assert not stale, "folded or gone: take them off TOO_MANY_PARAMETERS:\n" + "\n".join(stale)


def test_the_parameter_count_leaves_out_self_varargs_and_private_names():
    source = ("def f(a, /, b, *args, c, **kwargs): pass\n"
              "def _private(a, b, c, d, e, f, g, h, i): pass\n"
              "class C:\n"
              "    def __init__(self, a, b): pass\n"
              "    @classmethod\n"
              "    def make(cls, a): pass\n"
              "    @staticmethod\n"
              "    def free(a, b): pass\n"
              "    def _hidden(self): pass\n"
              "class _Private:\n"
              "    def method(self, a): pass\n"
              "def outer(a):\n"
              "    def inner(b, c): pass\n")
    assert parameter_counts(source, "m") == {"m.f": 3, "m.C.__init__": 2, "m.C.make": 1, "m.C.free": 2,
                                             "m.outer": 1}


README = PACKAGE.parent / "README.md"
#: rows of the README's stage table that serve the data flow without being a step of it: no stage number
BESIDE_THE_FLOW = {"helpers", "train", "bench", "figures", "command line"}


def readme_stages(text: str) -> list[tuple[str, str]]:
    """(stage, modules cell) of every row of the README's stage table, in its order."""
    rows, in_table = [], False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == ["stage", "modules"]:
            in_table = True
        elif in_table and line.startswith("|") and not set(cells[0]) <= {"-"}:
            rows.append((cells[0], cells[1]))
        elif in_table and not line.startswith("|"):
            break
    return rows


def stage_numbers(rows: list[tuple[str, str]], docstrings: dict[str, str]) -> list[str]:
    """What disagrees between the README's order of stages and the "Stage N, name:" of the folders' docstrings.

    The flow's stages are numbered from 1 in the README's order, rows beside the flow left
    out; every folder of the flow (a modules cell like ``zoo/``) opens its docstring with
    its number and name, and no other folder claims a number.
    """
    flow = [(stage, cell) for stage, cell in rows if stage not in BESIDE_THE_FLOW]
    expected = {cell.strip("`").rstrip("/"): f"Stage {n}, {stage}" for n, (stage, cell) in enumerate(flow, 1)
                if cell.startswith("`") and cell.strip("`").endswith("/")}
    errors = []
    for folder, doc in sorted(docstrings.items()):
        head = doc.split(":")[0].replace(", the ", ", ")
        if folder in expected and head != expected[folder]:
            errors.append(f"{folder}/__init__.py opens {head!r}; the README's order makes it {expected[folder]!r}")
        elif folder not in expected and head.startswith("Stage "):
            errors.append(f"{folder}/__init__.py claims {head!r}, but {folder} is no numbered stage of the README")
    errors += [f"{folder}/ is a README stage without a folder" for folder in sorted(set(expected) - set(docstrings))]
    return errors


def test_the_folders_number_their_stages_in_the_readmes_order():
    rows = readme_stages(README.read_text())
    assert [s for s, _ in rows if s not in BESIDE_THE_FLOW] == ["world", "zoo", "capture", "statistics", "mining",
                                                               "dictionary", "applications", "evaluation", "book"]
    docstrings = {path.parent.name: ast.get_docstring(ast.parse(path.read_text())) or ""
                  for path in sorted(PACKAGE.glob("*/__init__.py"))}
    assert not stage_numbers(rows, docstrings)


def test_the_stage_number_check_sees_a_wrong_a_missing_and_a_stray_number():
    rows = [("helpers", "`files.py`"), ("world", "`world.py`"), ("zoo", "`zoo/`"), ("mining", "`mining/`"),
            ("train", "`train/`")]
    right = {"zoo": "Stage 2, the zoo: members", "mining": "Stage 3, mining: one pass", "train": "Recipes"}
    assert stage_numbers(rows, right) == []
    wrong = right | {"mining": "Stage 4, mining: one pass", "train": "Stage 5, train: recipes"}
    assert len(stage_numbers(rows, wrong)) == 2
    assert stage_numbers(rows, {"zoo": "The model zoo: members", "mining": right["mining"]}) == [
        "zoo/__init__.py opens 'The model zoo'; the README's order makes it 'Stage 2, zoo'"]


#: modules whose public functions may still leave parameters unannotated, each with why
UNTYPED_FOR_NOW: dict[str, str] = {}


def untyped_parameters(source: str, module: str) -> dict[str, list[str]]:
    """{"module.function": [parameters without a type hint]} of every public function that has some."""
    found = {name: [a.arg for a in named + starred if a.annotation is None]
             for name, (named, starred) in public_parameters(source, module).items()}
    return {name: missing for name, missing in found.items() if missing}


def package_untyped_parameters() -> dict[str, list[str]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found.update(untyped_parameters(path.read_text(), module_name(path)))
    return found


def allowed_untyped(name: str) -> bool:
    return any(name == module or name.startswith(module + ".") for module in UNTYPED_FOR_NOW)


def test_every_public_functions_parameters_have_type_hints():
    missing = sorted(f"{name}: {', '.join(params)}" for name, params in package_untyped_parameters().items()
                     if not allowed_untyped(name))
    assert not missing, "public functions with parameters that have no type hint:\n" + "\n".join(missing)


def test_the_untyped_allow_list_holds_only_modules_still_untyped():
    untyped = package_untyped_parameters()
    stale = sorted(m for m in UNTYPED_FOR_NOW if not any(n.startswith(m + ".") for n in untyped))
    assert not stale, "every parameter typed there: take them off UNTYPED_FOR_NOW:\n" + "\n".join(stale)


def test_the_type_hint_check_sees_every_kind_of_parameter():
    source = ("def f(a, /, b: int, *args, c, **kwargs): pass\n"
              "def typed(a: int, *args: int, **kwargs: str) -> None: pass\n"
              "def _private(a): pass\n"
              "class C:\n"
              "    def __init__(self, a): pass\n"
              "    @classmethod\n"
              "    def make(cls, a: int): pass\n"
              "    def __exit__(self, kind, value, traceback): pass\n"
              "class _Private:\n"
              "    def method(self, a): pass\n"
              "def outer(a: int):\n"
              "    def inner(b): pass\n")
    assert untyped_parameters(source, "m") == {"m.f": ["a", "c", "args", "kwargs"], "m.C.__init__": ["a"],
                                               "m.C.__exit__": ["kind", "value", "traceback"]}
