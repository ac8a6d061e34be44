"""The six tasks behind one registry, and the package's layers: each imports only from layers below it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO
from test_imports import _imports, _modules

from mnist_ae import tasks

# Lowest first; a module may import from its own layer or any below it, never from one above.
LAYERS = (
    ("mnist_ae.core",),
    ("mnist_ae.errors", "mnist_ae.config", "mnist_ae.config_checks", "mnist_ae.metrics", "mnist_ae.workdir",
     "mnist_ae.render", "mnist_ae.data", "mnist_ae.build", "mnist_ae.checkpoint", "mnist_ae.parallel",
     "mnist_ae.hlo"),
    ("mnist_ae.writers", "mnist_ae.analysis", "mnist_ae.api", "mnist_ae.report"),
    ("mnist_ae.run",),
    ("mnist_ae.tasks",),
    ("mnist_ae.cli",),
)


def _layer(module: str) -> int | None:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def test_the_registry_holds_all_six_tasks_from_an_import_that_loads_no_jax():
    probe = "import sys, mnist_ae.tasks as t; print(sorted(t.TASKS), 'jax' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.split("] ")[1].strip() == "False", result.stderr
    assert eval(result.stdout.split("] ")[0] + "]") == sorted(
        ["reconstruction", "classification", "sweep", "analyze", "report", "compare"])
    assert [t.name for t in tasks.TASKS.values() if not t.trains] == ["report", "compare"]
    assert all(t.help and callable(t.fn) for t in tasks.TASKS.values())


def test_an_unknown_task_is_one_line_naming_the_choices():
    with pytest.raises(tasks.UnknownTask, match="unknown task 'bogus': choose one of reconstruction, classification, "
                                                "sweep, analyze, report, compare"):
        tasks.check_task("bogus")
    with pytest.raises(tasks.UnknownTask, match="choose one of reconstruction, classification, sweep, analyze$"):
        tasks.check_task("report", trains=True)


def test_every_module_imports_only_from_its_layer_or_below():
    modules = _modules()
    unplaced = sorted(m for m in modules if m != "mnist_ae" and _layer(m) is None)
    assert not unplaced, f"modules in no layer: {unplaced}"
    wrong = sorted(f"{name} -> {target}" for name, path in modules.items() if name != "mnist_ae"
                   for target in _imports(name, path, modules)
                   if target != "mnist_ae" and _layer(target) > _layer(name))
    assert not wrong, "imports against the layering: " + "; ".join(wrong)
