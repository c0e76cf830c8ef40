"""The house stays as ``docs/architecture.md`` describes it: no import circle anywhere in
``src/camscope`` (imports inside functions and under ``TYPE_CHECKING`` count), every import goes
in the allowed direction, every subpackage says in its docstring what lives there, no source
file is over 500 lines, and no two test files share a name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "camscope"
MAX_LINES = 500

# Which rooms each room may import ("*" = any room). A room is a top-level subpackage or module of
# camscope; core.engine is listed on its own because it alone loads the method catalogue.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "allocator": set(),
    "outputs": {"errors"},
    "core": {"errors"},
    "core.engine": {"errors", "core", "methods"},
    "perturbation": {"errors", "core"},
    "methods": {"errors", "core", "perturbation"},
    "models": {"errors", "core"},
    "io": {"errors", "outputs", "models"},
    "viz": {"errors", "outputs"},
    "metrics": {"errors", "core", "perturbation", "methods"},
    "data": {"errors", "core", "io", "models"},
    "tasks": {"errors", "core", "models", "io", "data"},
    "evaluation": {
        "errors",
        "outputs",
        "core",
        "methods",
        "perturbation",
        "models",
        "io",
        "viz",
        "metrics",
        "data",
    },
    "pictures": {
        "errors",
        "outputs",
        "core",
        "methods",
        "perturbation",
        "models",
        "io",
        "viz",
        "data",
        "tasks",
    },
    "batch": {
        "errors",
        "outputs",
        "allocator",
        "core",
        "methods",
        "perturbation",
        "models",
        "io",
        "viz",
        "metrics",
        "data",
        "tasks",
    },
    "serve": {
        "errors",
        "outputs",
        "core",
        "methods",
        "perturbation",
        "models",
        "io",
        "viz",
        "data",
        "tasks",
        "evaluation",
    },
    "training": {"errors", "outputs", "core", "models", "io", "viz", "metrics", "data"},
    "diagnosis": {
        "errors",
        "outputs",
        "core",
        "methods",
        "perturbation",
        "models",
        "io",
        "viz",
        "metrics",
        "data",
    },
    "audit": {"errors", "outputs", "core", "methods", "models", "io", "viz", "metrics", "data"},
    "embeddings": {"errors", "outputs", "core", "models", "io", "viz", "data"},
    "bias": {"errors", "outputs", "core", "models", "io", "viz", "data", "training", "audit"},
    "cli": {"*"},
    "__init__": {"*"},
    "__main__": {"cli"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """Absolute camscope module names an import statement refers to."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("camscope")]
    base = module if is_package else module.rpartition(".")[0]
    if node.level:
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    if not target.startswith("camscope"):
        return []
    names = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        names.append(sub if sub in MODULES else target)
    return names


def _all_imports() -> dict[str, set[str]]:
    """Every camscope module each module names in an import, existing or not."""
    found: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found[name] = {
            target
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for target in _resolve(name, node, path.name == "__init__.py")
        }
    return found


def _imports() -> dict[str, set[str]]:
    return {
        name: {t for t in targets if t in MODULES and t != name}
        for name, targets in _all_imports().items()
    }


def _room(module: str, *, importer: bool = False) -> str:
    """The room of a module; ``core.engine`` is a room of its own as an importer only."""
    parts = module.split(".")[1:]
    if not parts:
        return "__init__"
    if importer and parts[:2] == ["core", "engine"]:
        return "core.engine"
    return parts[0]


def test_every_import_names_a_module_that_exists() -> None:
    """Imports inside functions run late; a stale path there only fails when that code runs."""
    stale = [
        f"{module} imports {target}"
        for module, targets in _all_imports().items()
        for target in targets
        if target not in MODULES
    ]
    assert not stale, "\n".join(stale)


def test_no_import_circle() -> None:
    graph = _imports()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_imports_follow_the_direction() -> None:
    wrong = []
    for module, targets in _imports().items():
        room = _room(module, importer=True)
        allowed = ALLOWED.get(room)
        assert allowed is not None, f"{module}: room {room!r} is not in ALLOWED (add it)"
        for target in targets:
            other = _room(target)
            if other != room.partition(".")[0] and other not in allowed and "*" not in allowed:
                wrong.append(f"{module} imports {target} ({room} may import {sorted(allowed)})")
    assert not wrong, "\n".join(wrong)


def test_methods_never_import_the_engine() -> None:
    graph = _imports()
    offenders = [
        m
        for m in graph
        if m.startswith("camscope.methods") and any(t == "camscope.core.engine" for t in graph[m])
    ]
    assert not offenders


def test_subpackages_say_what_lives_there() -> None:
    for init in SRC.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc.split()) >= 12, f"{init.relative_to(SRC)} needs a docstring"


def test_no_file_over_the_limit() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_test_file_names_are_unique() -> None:
    """tests/ is on sys.path and has no packages: two test files of one name cannot both be
    collected (pytest stops with 'import file mismatch')."""
    tests = Path(__file__).resolve().parent
    seen: dict[str, list[str]] = {}
    for path in tests.rglob("test_*.py"):
        seen.setdefault(path.name, []).append(str(path.relative_to(tests)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, f"rename one of each: {clashes}"
