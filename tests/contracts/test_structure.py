"""The package's shape: no import cycles, the algorithm files are the reference and read in one sitting.

The import graph is read from the source (``ast``), every ``import`` counted, including those
inside functions: a lazy import hides a cycle from Python, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "lucidrl"
ALGOS = sorted((PACKAGE / "algos").glob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # "from pkg import sub" imports the module pkg.sub where there is one, else pkg
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                ]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    assert "lucidrl.agent" in graph and graph["lucidrl.algos.ppo"]  # the graph was read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("path", ALGOS, ids=lambda p: p.name)
def test_algorithm_files_hold_the_reference_only(path):
    graph = import_graph()
    imported = graph[module_name(path)]
    assert not any(m == "lucidrl.fast" or m.startswith("lucidrl.fast.") for m in imported), imported
    text = path.read_text()
    assert not [line for line in text.splitlines() if "import" in line and "lucidrl.fast" in line]  # the grep
    lines = len(text.splitlines())
    assert lines <= 350, f"{path.name} has {lines} lines; an algorithm file reads in one sitting (at most 350)"


def test_the_reference_uses_torch_optim_and_autograd_not_numpy_gradients():
    for path in ALGOS:
        if path.name in ("q_learning.py", "__init__.py"):  # tabular Q-learning's table is NumPy: its algorithm
            continue
        text = path.read_text()
        for banned in ("_fused_adam_", "np.matmul", "numpy_", "torch.ops.aten", "autograd.Function"):
            assert banned not in text, f"{path.name} contains {banned!r}: speed code belongs in lucidrl/fast/"
