"""The domain stays plain Python: nothing under shared/ imports azure.functions (only triggers do)."""

from __future__ import annotations

import ast

from local.processes import PROJECT_ROOT


def imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_shared_never_imports_azure_functions():
    offenders = [str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "shared").rglob("*.py")
                 if any(m == "azure.functions" or m.startswith("azure.functions.") for m in imported_modules(p))]
    assert offenders == []


def test_every_trigger_module_registers_a_blueprint():
    modules = sorted(p for p in (PROJECT_ROOT / "function_app").glob("*.py") if p.name != "__init__.py")
    assert modules
    for module in modules:
        assert "Blueprint()" in module.read_text(), module.name
        assert "azure.functions" in set(imported_modules(module)), module.name
