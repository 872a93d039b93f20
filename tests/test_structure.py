"""tlbench's module structure: no import cycles, no module over 400 lines, no function over 80;
packages by job, imported only downwards through the layers; MLflow's client behind tracking/.

Cycles and layers count function-local imports too (they only hide a dependency until the
function runs); imports under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tlbench"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# The layers, lowest first: a package (or top-level module) imports only from its own layer or
# below. Data flows spec -> cells -> data / models -> features -> train -> tracking (what a run
# records) -> executor (which trains and records cells) -> tune / report / preflight / rank -> api -> cli.
LAYERS = (
    (
        "errors",
        "registry",
        "security",
        "interrupts",
        "dburl",
        "version",
        "diskspace",
    ),  # ground-floor utilities
    ("catalog", "stats", "transferability"),  # torch-free registries of names; pure statistics and scores
    ("spec",),
    ("cells", "figures"),
    ("data", "models"),
    ("features",),
    ("train",),
    ("tracking",),
    ("executor",),
    ("tune", "report", "preflight", "server", "rank"),
    ("api", "grid"),  # the library's entry point; tlbench.grid: a re-export kept for scripts
    ("cli",),
)
MAX_TOP_LEVEL_MODULES = 8  # beside __init__.py: the rest lives in packages named by their job


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(tree: ast.Module) -> list[str]:
    """Every imported name, function-local ones included; ``if TYPE_CHECKING:`` blocks skipped."""
    skipped = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    names = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {resolve(n) for n in _imports(ast.parse(path.read_text()))}
        graph[name] = {t for t in targets if t and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_tlbench_modules():
    assert _cycles(_graph()) == []


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_and_functions_stay_small(name):
    path = _modules()[name]
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path} has {len(text.splitlines())} lines"
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == [], f"{path}: {long}"


def _top(name: str) -> str:
    """The package (or top-level module) a dotted tlbench module name belongs to."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_layer_and_imports_only_downwards():
    layer = {pkg: i for i, pkgs in enumerate(LAYERS) for pkg in pkgs}
    tops = {_top(m) for m in _modules()} - {"__init__"}
    assert tops <= set(layer), f"packages without a layer: {sorted(tops - set(layer))}"
    upward = sorted(
        f"{src} -> {dst}"
        for src, targets in _graph().items()
        for dst in targets
        if "__init__" not in (_top(src), _top(dst)) and layer[_top(dst)] > layer[_top(src)]
    )
    assert upward == [], upward


def test_the_top_level_holds_few_modules():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_only_tracking_and_the_server_touch_mlflows_client():
    """The tracker is the seam: elsewhere nothing builds an ``MlflowClient`` or reads a ``.client``."""
    found = []
    for name, path in _modules().items():
        if _top(name) in ("tracking", "server"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "client":
                found.append(f"{name}:{node.lineno} .client")
            if isinstance(node, ast.Name) and node.id == "MlflowClient":
                found.append(f"{name}:{node.lineno} MlflowClient")
    assert found == [], found
