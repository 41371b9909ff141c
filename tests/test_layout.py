"""The house: every module of tasks/ and api/ imports alone, in a fresh interpreter, and no two import each
other (directly or through others). An import inside a function is allowed only with a comment saying why."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("tasks", "api")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if MODULES[module].name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The project modules an import statement names: ``from a import b`` names a.b when that is a module,
    else a (a package's own ``__init__`` is loaded first by any import of its modules, so it does not count)."""
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        source = _resolve(module, node)
        names = {f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names}
    return {name for name in names if name in MODULES}


def _module_level_imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()
    for node in tree.body:
        candidates = [node]
        if isinstance(node, ast.If):  # TYPE_CHECKING blocks and the like
            candidates = [*node.body, *node.orelse]
        for stmt in candidates:
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                found |= _targets(module, stmt) - {module}
    return found


def test_the_packages_have_the_five_rooms_and_their_modules():
    rooms = {m.split(".")[1] for m in MODULES if m.startswith("tasks.") and MODULES[m].name == "__init__.py"}
    assert rooms == {"slots", "media", "catalog", "ops", "worker"}
    assert "tasks.worker.hooks" in MODULES and "tasks.slots.lua" not in MODULES


def test_no_module_of_tasks_or_api_imports_itself_through_others():
    graph = {module: _module_level_imports(module) for module in MODULES}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_api_imports_tasks_and_tasks_never_imports_api():
    uses_api = sorted(m for m in MODULES if m.startswith("tasks") and any(
        t.startswith("api") for t in _module_level_imports(m)))
    assert uses_api == []


def test_every_import_inside_a_function_says_why():
    unexplained = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom) and _targets(module, inner):
                    before = lines[inner.lineno - 2].strip() if inner.lineno > 1 else ""
                    if not before.startswith("#"):
                        unexplained.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert unexplained == []


def _import_alone(module: str) -> tuple[str, int, str]:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    return module, done.returncode, done.stderr[-2000:]


@pytest.mark.slow
def test_each_module_imports_alone_in_a_fresh_interpreter():
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_import_alone, sorted(MODULES)))
    failed = {module: err for module, code, err in results if code != 0}
    assert failed == {}
    assert len(results) == len(MODULES) > 40
