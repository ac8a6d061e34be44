"""The package's import graph: no cycle anywhere, and a core that reads no config and does no I/O."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import mnist_ae

PACKAGE = Path(mnist_ae.__file__).parent


def _modules() -> dict[str, Path]:
    found = {"mnist_ae": PACKAGE / "__init__.py"}
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="mnist_ae."):
        base = PACKAGE.joinpath(*info.name.split(".")[1:])
        found[info.name] = base / "__init__.py" if info.ispkg else base.with_suffix(".py")
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """mnist_ae modules `name` imports, at top level or inside functions (lazy imports count too)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        out |= {t for t in targets if t in modules and t != name}
    return out


def test_no_import_cycle():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt == "mnist_ae" or (node.startswith(nxt + ".") and modules[nxt].name == "__init__.py"):
                continue  # a module importing its own package's __init__ (re-exports) is not a cycle here
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert len(graph) > 30  # the walk saw the whole package


def test_the_core_imports_no_config_and_nothing_outside_the_core_and_does_no_io():
    modules = _modules()
    core = {name: path for name, path in modules.items() if name.startswith("mnist_ae.core")}
    assert {"mnist_ae.core.steps", "mnist_ae.core.loop", "mnist_ae.core.sweep"} <= set(core)
    for name, path in core.items():
        source = path.read_text()
        outside = {m for m in _imports(name, path, modules) if not m.startswith("mnist_ae.core")}
        assert not outside, f"{name} imports {outside}"
        tree = ast.parse(source)
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & {"ml_collections", "pathlib", "os", "json", "time", "logging"}, name
        calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        assert "open" not in calls and "print" not in calls, name
