"""Every Polygraphy call trtq makes, checked against a Polygraphy's real signatures (inspect.signature).

The scan (ast) finds, in every module of trtq/, the names imported from `polygraphy.*`, the calls
made on them (`TrtRunner(loader, name=...)`, `Comparator.run(runners, data_loader=..., streaming=True)`)
and the attributes read from them (`G_LOGGER.INFO`). `problems()` imports the Polygraphy that is on
sys.path and says what does not exist or does not bind; run as a script it prints them as JSON, so a
test can check another Polygraphy version (an unpacked wheel on PYTHONPATH) in a subprocess:

    PYTHONPATH=/tmp/polygraphy-0.49.0 python -m tests.polygraphy_calls
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Use:
    """One use of a Polygraphy name: `module.path` called with `positional` args and `keywords`, or read."""

    module: str
    path: tuple[str, ...]
    where: str
    called: bool = False
    positional: int = 0
    keywords: tuple[str, ...] = ()


def _imports(tree: ast.AST) -> dict[str, tuple[str, str]]:
    """local name -> (polygraphy module, name in it), from every `from polygraphy.x import y` (also in functions)."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "polygraphy":
            for alias in node.names:
                found[alias.asname or alias.name] = (node.module, alias.name)
    return found


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        node = node.value
    return [node.id, *parts] if isinstance(node, ast.Name) else None


def scan(paths: list[Path] | None = None) -> list[Use]:
    """The Polygraphy uses in `paths` (default: every module of trtq/)."""
    uses: list[Use] = []
    for path in paths or sorted((ROOT / "trtq").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names = _imports(tree)
        where = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
        called = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (dotted := _dotted(node.func)) and dotted[0] in names:
                module, name = names[dotted[0]]
                called.add(id(node.func))
                star = any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords)
                if not star:
                    uses.append(Use(module, (name, *dotted[1:]), f"{where}:{node.lineno}", True, len(node.args),
                                    tuple(k.arg for k in node.keywords if k.arg)))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and id(node) not in called and (dotted := _dotted(node)) \
                    and dotted[0] in names:
                module, name = names[dotted[0]]
                uses.append(Use(module, (name, *dotted[1:]), f"{where}:{node.lineno}"))
    return uses


def _resolve(use: Use) -> object:
    obj: object = importlib.import_module(use.module)
    for part in use.path:
        obj = getattr(obj, part)
    return obj


def check(use: Use) -> str | None:
    """None if the use exists and (for a call) binds to the signature, else what is wrong."""
    label = f"{use.module}.{'.'.join(use.path)} ({use.where})"
    try:
        target = _resolve(use)
    except (ImportError, AttributeError) as exc:
        return f"{label}: does not exist ({exc})"
    if not use.called:
        return None
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: existence is all that can be checked
    try:
        signature.bind(*[None] * use.positional, **dict.fromkeys(use.keywords))
    except TypeError as exc:
        return f"{label}: {use.positional} positional + {', '.join(use.keywords) or 'no'} keyword(s) do not fit " \
               f"{signature}: {exc}"
    return None


def problems(uses: list[Use] | None = None) -> list[str]:
    """What does not exist or does not bind in the Polygraphy on sys.path."""
    return [p for use in (uses if uses is not None else scan()) if (p := check(use))]


if __name__ == "__main__":
    import polygraphy

    json.dump({"version": polygraphy.__version__, "problems": problems()}, sys.stdout)
