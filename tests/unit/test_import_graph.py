"""No import circles in backend/, scripts/ and config.py, checked two ways.

1. Statically: every `import` statement of every module, at module level or inside a function
   or an `if TYPE_CHECKING:` block, is an edge of a graph of this project's modules, and so is
   the import of each enclosing package's __init__ that importing a module implies; a circle (a
   strongly connected component of more than one module) fails with the modules on it. Lazy
   imports count: a circle closed inside a function is still one (backend.pipelines.tts.common
   imported both backends that way, and each imported it back). Two exceptions, both in a
   package __init__: imports inside its functions (backend.create_app) run only once the
   package is initialised, which is what makes a factory safe; and importing its own submodules
   to re-export them (backend.registry) is the package being made of them, not a dependency.
   backend/pipelines/__init__.py importing the registry, which named backend.pipelines.base,
   was a circle by this rule.
2. Dynamically: a fresh interpreter imports every module, in sorted order and again in reverse,
   so no module works only when something else happened to be imported before it.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from config import Settings
from tests.conftest import ROOT

PACKAGES = ("backend", "scripts")


def project_modules() -> dict[str, Path]:
    """Dotted name -> file, for config.py and every module of the packages."""
    modules = {"config": ROOT / "config.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imported_modules(path: Path, modules: dict[str, Path], name: str = "") -> set[str]:
    """The project modules one file imports, and the packages enclosing it (see the module docstring)."""
    parts = name.split(".")
    found = {".".join(parts[:i]) for i in range(1, len(parts))} & set(modules)  # the enclosing packages

    def nearest(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    if path.name == "__init__.py":
        for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]:
            function.body = []  # runs after the package is initialised: not part of its import
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from a.b import c`: the module a.b.c if there is one, else a.b (c is a name in it)
            targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                       for alias in node.names]
        else:
            continue
        found.update(module for module in map(nearest, targets) if module)
    if path.name == "__init__.py":
        found = {module for module in found if not module.startswith(f"{name}.")}  # its own parts, re-exported
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_finds_a_circle_closed_by_a_lazy_import(tmp_path):
    """The check itself can fail: two modules that import each other, one of them inside a function."""
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    modules = {"a": tmp_path / "a.py", "b": tmp_path / "b.py"}
    graph = {name: imported_modules(path, modules, name) for name, path in modules.items()}
    assert circles(graph) == [["a", "b"]]


def test_no_module_imports_its_way_back_to_itself():
    modules = project_modules()
    graph = {name: imported_modules(path, modules, name) for name, path in modules.items()}
    assert len(modules) > 50 and graph["backend.catalog"] >= {"backend.registry", "config"}
    found = circles(graph)
    assert not found, "import circles: " + "; ".join(" <-> ".join(circle) for circle in found)


def test_every_module_imports_in_a_fresh_interpreter_in_any_order():
    names = sorted(project_modules())
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    settings_vars = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings_vars}  # backend.wsgi builds the app
    for order in (names, names[::-1]):
        result = subprocess.run([sys.executable, "-c", code, *order], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
