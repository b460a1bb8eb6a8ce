"""The deployed package (main.py, function_app/, shared/) imports nothing from tools/ or local/: .funcignore
leaves both out of the Functions package, so such an import would only fail once deployed to Azure."""

from __future__ import annotations

import ast

from local.processes import PROJECT_ROOT

DEPLOYED = [PROJECT_ROOT / "main.py", *sorted((PROJECT_ROOT / "function_app").rglob("*.py")),
            *sorted((PROJECT_ROOT / "shared").rglob("*.py"))]
NOT_DEPLOYED = ("tools", "local")


def top_level_imports(path) -> set[str]:
    """Every top-level package a module imports, at module level or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_deployed_package_never_imports_the_tools_or_the_local_stack():
    offenders = {str(p.relative_to(PROJECT_ROOT)): sorted(top_level_imports(p) & set(NOT_DEPLOYED))
                 for p in DEPLOYED}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_funcignore_leaves_the_tools_and_the_local_stack_out():
    ignored = {line.strip() for line in (PROJECT_ROOT / ".funcignore").read_text().splitlines()}
    assert {f"/{name}" for name in NOT_DEPLOYED} <= ignored
