"""The package's modules import each other without cycles.

The graphs: one node per module of ``pyro_mixvae`` (a package is its ``__init__``), an edge A -> B when
A imports B (``import pyro_mixvae.B``, ``from pyro_mixvae.B import x``, ``from . import B``,
``from .B import x``). ``from P import x`` points at the module ``P.x`` when that file exists, else at
``P``. Parent packages that Python initialises on the way are not edges: no import order the code
chose. A strongly connected component of more than one module (or a module importing itself) is a
cycle. Two graphs:

* module level (inside try / if / with / class bodies too; not under ``if TYPE_CHECKING:``, which
  never runs): what Python executes on import; it must have no cycle at all;
* with the imports inside functions too: a function-local import that closes a cycle hides it from
  the import order, the modules still depend on each other; there must be none either.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "pyro_mixvae"
PACKAGE = "pyro_mixvae"


def module_names() -> dict:
    """Dotted module name -> file, for every .py file of the package."""
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def import_time_statements(body, functions: bool = False):
    """The statements that may import: those at module level, nested in try / if / with / class bodies
    (they run on import), except the body of ``if TYPE_CHECKING:``, which never runs; with
    ``functions``, the bodies of functions and methods too (imports deferred to call time)."""
    for node in body:
        if isinstance(node, ast.If):
            test = node.test
            type_checking = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
            if not type_checking:
                yield from import_time_statements(node.body, functions)
            yield from import_time_statements(node.orelse, functions)
        elif isinstance(node, ast.Try):
            for part in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from import_time_statements(part, functions)
        elif isinstance(node, (ast.With, ast.For, ast.While, ast.ClassDef)):
            yield from import_time_statements(node.body, functions)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if functions:
                yield from import_time_statements(node.body, functions)
        else:
            yield node


def imported_modules(name: str, path: Path, modules: dict, functions: bool = False) -> set:
    """The package's modules that module ``name`` imports (at module level; with ``functions``, anywhere)."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    targets = set()
    for node in import_time_statements(ast.parse(path.read_text()).body, functions):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                targets.add(sub if sub in modules else source)
    return {t for t in targets if t in modules and t != PACKAGE or t == name}


def import_graph(functions: bool = False) -> dict:
    modules = module_names()
    return {name: imported_modules(name, path, modules, functions) for name, path in modules.items()}


def cycles(graph: dict) -> list:
    """The strongly connected components with a cycle (Tarjan), each a frozenset of module names."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
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
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles_and_only_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"a"}, "b": set()}) == [frozenset("a")]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert {"pyro_mixvae.cli", "pyro_mixvae.models", "pyro_mixvae.infer.train"} <= set(graph)
    assert graph["pyro_mixvae.cli"]  # the CLI imports the package's modules at module level


def test_no_module_level_import_cycle():
    """What Python executes on import: no cycle at all, or the import order decides what exists."""
    assert cycles(import_graph()) == []


def test_no_import_cycle_at_all():
    """A function-local import that closes a cycle hides the cycle from the import order; the modules
    still depend on each other."""
    found = cycles(import_graph(functions=True))
    assert found == [], f"import cycles: {sorted(sorted(c) for c in found)}"
