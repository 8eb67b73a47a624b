"""The package's layers point down only, and no modules import each other in a ring.

Every import counts, the ones inside functions too: an import deferred to save torch's loading still makes
the module depend on what it imports. The layers are written once, in LAYERS; the checkers take a graph, so
that they are tested on graphs made to fail as well as on the project's own.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module may import from its own layer and the layers below, never from one above. An entry
# is a module's dotted name, or `name.*` for a package and everything in it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # Words, settings and errors that everything shares, with the standard library and numpy alone.
    ("leaves", ("mvae.registry", "mvae.errors", "mvae.fields", "mvae.config", "mvae.api_checks", "mvae.requires",
                "mvae.encoded", "mvae.folders")),
    # Images and sound as arrays, with no notion of a modality (augment.py, in torch, for training).
    ("signals", ("mvae.signals.*",)),
    # Which modality is of which kind, and what a kind's shape and user input are.
    ("kinds", ("mvae.kinds",)),
    # Checkpoint files as bytes and the numpy forward pass: the whole of the lean app's model.
    ("store and runtime", ("mvae.store", "mvae.store_checks", "mvae.latent", "mvae.runtime.*")),
    # Prepared data sets, read into banks and paired, each kind's files looked up by kind.
    ("data", ("mvae.data.*",)),
    # The torch model, its objective and its export to the runtime's program.
    ("model", ("mvae.model.*",)),
    ("checkpoint", ("mvae.checkpoint",)),
    ("evaluation", ("mvae.evaluation.*",)),
    ("training", ("mvae.training.*",)),
    # What a user of the library calls: `mvae.load()` and the command that upgrades a checkpoint.
    ("facade", ("mvae", "mvae.inference", "mvae.upgrade")),
    ("applications", ("webapp.*", "pages.*", "app", "train", "benchmarks.*")),
]
SOURCES = ("mvae", "webapp", "pages", "benchmarks", "app.py", "train.py")


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # a module of the project
    name: str  # the name taken from it; "" for `import x.y`
    line: int


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files(root: Path = ROOT) -> dict[str, Path]:
    files = {}
    for source in SOURCES:
        path = root / source
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            files[module_name(file, root)] = file
    return files


def imports_of(name: str, path: Path, modules) -> list[Import]:
    """Every import of a project module in the file, wherever it stands (in a function, under an `if`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def owner(dotted: str) -> str | None:  # the longest prefix of `dotted` that is a project module
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in modules:
                return ".".join(parts[:i])
        return None

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := owner(alias.name)) is not None:
                    found.append(Import(name, target, "", node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                # `from mvae import checkpoint` imports the module mvae.checkpoint, not the package mvae.
                target = f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else owner(source)
                if target is not None:
                    found.append(Import(name, target, alias.name, node.lineno))
    return found


def project_imports(root: Path = ROOT) -> list[Import]:
    files = project_files(root)
    return [i for name, path in files.items() for i in imports_of(name, path, files)]


def graph_of(imports) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for i in imports:
        graph.setdefault(i.importer, set())
        if i.imported != i.importer:
            graph[i.importer].add(i.imported)
        graph.setdefault(i.imported, set())
    return graph


# -- the checkers ----------------------------------------------------------------------------------------
def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One ring of imports per strongly connected group of modules, as [a, b, ..., a]; empty when none."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm; the graphs here are a few hundred edges deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph.get(v, ()):
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_ring(graph, set(group)) for group in groups]


def _ring(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest path from the group's first module back to itself, within the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph.get(v, ()) & group):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    following.append(w)
        frontier = following
    raise AssertionError(f"{sorted(group)} is no cycle")


def layer_of(module: str, layers=LAYERS) -> int | None:
    """The rank of the module's layer in `layers`, the most specific entry deciding; None if none holds it."""
    best, rank = -1, None
    for i, (_, entries) in enumerate(layers):
        for entry in entries:
            package = entry.removesuffix(".*")
            matches = module == package or (entry.endswith(".*") and module.startswith(package + "."))
            if matches and len(package) > best:
                best, rank = len(package), i
    return rank


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """Each import of a module in a higher layer than its importer's, in words."""
    found = []
    for importer in sorted(graph):
        low = layer_of(importer, layers)
        for imported in sorted(graph[importer]):
            high = layer_of(imported, layers)
            if low is not None and high is not None and high > low:
                found.append(f"{importer} ({layers[low][0]}) imports {imported} ({layers[high][0]})")
    return found


def private_imports(imports) -> list[str]:
    """Each name with a leading underscore taken from another module: what it needs should be public."""
    return [f"{i.importer}:{i.line} imports {i.name} from {i.imported}" for i in imports
            if i.name.startswith("_") and not i.name.startswith("__") and i.imported != i.importer]


# -- the project -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imports():
    return project_imports()


def test_no_module_of_the_project_imports_itself_through_others(imports):
    cycles = find_cycles(graph_of(imports))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_layer_imports_from_one_above(imports):
    upward = upward_imports(graph_of(imports))
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_every_module_has_a_layer_and_every_layer_a_module():
    modules = project_files()
    assert not [m for m in modules if layer_of(m) is None], "add these modules to LAYERS"
    for name, entries in LAYERS:
        for entry in entries:
            package = entry.removesuffix(".*")
            assert any(m == package or m.startswith(package + ".") for m in modules), (name, entry)


def test_no_private_name_crosses_a_module(imports):
    private = private_imports(imports)
    assert not private, "private names used across modules:\n" + "\n".join(private)


def test_the_import_graph_sees_lazy_and_relative_imports(imports):
    """What the checks read is what the code does: a relative import, an import inside a function and
    `from package import module` are each an edge to the module."""
    graph = graph_of(imports)
    assert "mvae.runtime.model" in graph["mvae.model.export"]  # `from ..runtime.model import ...`
    assert "mvae.model.export" in graph["mvae.inference"]  # inside Pipeline.__init__
    assert "mvae.checkpoint" in graph["mvae.evaluation.judges"]  # `from .. import checkpoint`
    assert {"mvae.errors", "mvae.inference"} <= graph["mvae"]
    assert "webapp.inputs" in graph["pages.draw"]


# -- the checkers can fail -------------------------------------------------------------------------------
def test_a_cycle_is_found_and_named():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert sorted(find_cycles(graph)) == [["a", "b", "c", "a"], ["e", "e"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_an_upward_import_is_found_and_named():
    layers = [("low", ("pkg.base", "pkg.util.*")), ("high", ("pkg.app",))]
    graph = {"pkg.base": {"pkg.app"}, "pkg.util.x": {"pkg.base"}, "pkg.app": {"pkg.util.x", "pkg.base"}}
    assert upward_imports(graph, layers) == ["pkg.base (low) imports pkg.app (high)"]
    assert layer_of("pkg.util", layers) == 0 and layer_of("pkg.other", layers) is None


def test_a_lazy_relative_private_import_is_read(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from .high import _secret\n    return _secret\n")
    (package / "high.py").write_text("from . import low\n_secret = 1\n")
    files = {module_name(p, tmp_path): p for p in sorted(package.glob("*.py"))}
    found = [i for name, path in files.items() for i in imports_of(name, path, files)]
    graph = graph_of(found)
    assert graph["pkg.low"] == {"pkg.high"} and graph["pkg.high"] == {"pkg.low"}
    assert find_cycles(graph) == [["pkg.high", "pkg.low", "pkg.high"]]
    assert private_imports(found) == ["pkg.low:2 imports _secret from pkg.high"]
