"""No import cycles in repflow_core / repflow_ros (issue 8), and every ROS-layer module imports on its own.

The cycle check reads the import statements (no import runs, so it is instant): module-level imports only, because an
import inside a function is the project's deliberate way to defer an optional or heavy dependency. The fresh-interpreter
check then imports each ``repflow_ros`` module first in a new process, which is how a cycle would actually fail.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("repflow_core", "repflow_ros")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _top_level_imports(node: ast.AST):
    """Import nodes executed at import time: module body, also inside try/if/with at module level (not functions,
    classes' methods or ``if TYPE_CHECKING``)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            continue
        elif isinstance(child, (ast.Try, ast.If, ast.With, ast.ClassDef, ast.ExceptHandler)):
            yield from _top_level_imports(child)


def _edges(name: str, path: Path, known: set[str]) -> set[str]:
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in _top_level_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            stem = f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module)
            targets = [stem] + [f"{stem}.{alias.name}" for alias in node.names]  # `from . import viz` -> a module
        for target in targets:
            while target and target not in known:  # `import a.b.c` also runs a and a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_find_cycle_sees_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_modules():
    modules = _modules()
    known = set(modules)
    # A package's __init__ importing its own submodules is how packages re-export; what must not happen is a
    # submodule importing back a module that imports it.
    graph = {name: {t for t in _edges(name, path, known) if not name.startswith(t + ".")}
             for name, path in modules.items()}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_core_never_imports_ros():
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("repflow_core"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    assert not any(n.split(".")[0] in ("rclpy", "repflow_ros") for n in names), name


ROS_MODULES = sorted(n for n in _modules() if n.startswith("repflow_ros.") and not n.endswith("__main__"))


@pytest.mark.parametrize("module", ROS_MODULES)
def test_each_ros_module_imports_first_in_a_fresh_interpreter(module):
    pytest.importorskip("rclpy")
    proc = subprocess.run([sys.executable, "-c", f"import importlib; importlib.import_module({module!r})"],
                          capture_output=True, text=True, timeout=180, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr
