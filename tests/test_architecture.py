"""The import graph of trtq: no upward imports across the layers, no cycles between modules or packages.

Read from the source with `ast` (no module is imported), so a lazy import inside a function or an
import under TYPE_CHECKING counts like any other: a cycle hidden in a function is still a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"trtq": ROOT / "trtq", "trtq.calibrators": ROOT / "calibrators", "trtq.configs": ROOT / "configs"}

# Bottom first. A module may import its own layer and the layers below it, never one above.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("trtq._version", "trtq.errors", "trtq._lazy", "trtq.atomic", "trtq.progress")),
    ("calibrators", ("trtq.calibrators",)),  # observers, algorithms and their registry: numpy only
    ("config", ("trtq.config", "trtq.config_yaml", "trtq.configs")),  # reads the method choices from the registry
    ("model", ("trtq.onnx_model",)),
    ("core", ("trtq.data", "trtq.cache", "trtq.qdq")),
    ("engine", ("trtq.engine",)),
    ("runtime", ("trtq.runtime",)),
    ("stages", ("trtq.calibration", "trtq.accuracy")),
    ("cluster", ("trtq.cluster",)),  # Ray: runs the stages' work in parallel tasks (optional extra)
    ("report", ("trtq.report",)),
    ("pipeline", ("trtq.pipeline",)),
    ("cli", ("trtq.cli",)),
    ("api", ("trtq",)),  # trtq/__init__.py: the public facade over everything
)


def _modules() -> dict[str, Path]:
    """module name -> source file, for every module of the package (mapped folders included)."""
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            if package == "trtq" and name.startswith(tuple(p + "." for p in SOURCES if p != "trtq")):
                continue
            found[name] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> Iterator[str]:
    """The trtq modules `name` imports (`from pkg import sub` names the submodule when it is one)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "trtq")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "trtq":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in modules else base


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(path, name, modules) if m != name} for name, path in modules.items()}


def _layer(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def _unit(module: str) -> str:
    """The package (or base module) a module belongs to, for the package-level cycle check."""
    parts = module.split(".")
    if module.startswith("trtq.calibrators") or module.startswith("trtq.configs"):
        return ".".join(parts[:2])
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_module_is_in_a_layer():
    for module in _modules():
        _layer(module)


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{m} ({LAYERS[_layer(m)][0]}) imports {d} ({LAYERS[_layer(d)][0]})"
              for m, deps in _graph().items() for d in sorted(deps) if _layer(d) > _layer(m)]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
    # A package's __init__ re-exporting its modules is the one allowed back edge: a module of the
    # package importing the package itself would make a cycle, and is reported.
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_between_packages():
    units: dict[str, set[str]] = {}
    for module, deps in _graph().items():
        units.setdefault(_unit(module), set()).update(_unit(d) for d in deps if _unit(d) != _unit(module))
    cycle = _cycle(units)
    assert cycle is None, "package cycle: " + " -> ".join(cycle or [])


def test_the_check_sees_a_cycle_and_an_upward_import():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert _layer("trtq.pipeline.build") > _layer("trtq.accuracy.compare") > _layer("trtq.runtime.session")
    assert _layer("trtq.calibrators.registry") < _layer("trtq.calibration.ranges")
    assert "trtq.calibrators.registry" in _graph()["trtq.calibrators"]
