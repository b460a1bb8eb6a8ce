"""The layers, as rules over every module's imports (read with `ast`, nothing imported), each proved able to fail.

Data flows one way: trigger -> service -> domain, with adapters behind the Protocols of shared.ports, chosen by
shared.bootstrap. The rules:

(a) shared/domain imports nothing of ours outside shared.domain (the standard library and third-party packages
    are allowed): it is pure and can be read alone.
(b) shared/services import only the domain, shared.ports, shared.settings, the shared infrastructure
    (shared.redaction, shared.telemetry), other services, and shared.scoring.model_digest (the I/O-free digest
    comparison the training step, the scoring paths and the completion handler share) — never an adapter or
    bootstrap: they see collaborators only through the ports.
(c) shared/adapters never import shared.services or shared.bootstrap (nothing below a service calls up into it).
(d) the deployed package (main.py, function_app/, shared/) never imports the local stack (`local`) or the operator
    tools (`tools`), nor the tests or benchmarks.
(e) function_app/ modules are thin triggers: they import only shared.bootstrap, shared.services, shared.api,
    shared.settings and shared.telemetry (and their own package's helpers).
(f) only triggers import azure.functions (nothing under shared/), and every trigger module registers a blueprint.

Each rule is a function from a project root to its violations; the self-checks run it on a synthetic tree in
tmp_path that breaks it, so a rule that can no longer fail is noticed.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from local.processes import PROJECT_ROOT

OURS = ("shared", "function_app", "local", "tools", "bench", "tests", "main")


def imported_modules(path: Path, root: Path = PROJECT_ROOT) -> Iterator[str]:
    """Every module `path` imports, as a dotted name; `from a import b` yields `a.b` (b may be a module); a relative
    import is resolved against the module's package under `root`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.parent.relative_to(root).parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, *([node.module] if node.module else [])))
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _ours(module: str) -> bool:
    return module.split(".")[0] in OURS


def _modules(root: Path, *folders: str) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        path = root / folder
        found += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return found


def _violations(root: Path, folders: tuple[str, ...], bad: Callable[[str], bool]) -> list[str]:
    return [f"{p.relative_to(root)} imports {m}" for p in _modules(root, *folders)
            for m in imported_modules(p, root) if bad(m)]


def domain_violations(root: Path) -> list[str]:
    """(a)"""
    return _violations(root, ("shared/domain",), lambda m: _ours(m) and not _within(m, ("shared.domain",)))


SERVICE_IMPORTS = ("shared.domain", "shared.ports", "shared.settings", "shared.redaction", "shared.telemetry",
                   "shared.services", "shared.scoring.model_digest")


def service_violations(root: Path) -> list[str]:
    """(b)"""
    return _violations(root, ("shared/services",), lambda m: _ours(m) and not _within(m, SERVICE_IMPORTS))


def adapter_violations(root: Path) -> list[str]:
    """(c)"""
    return _violations(root, ("shared/adapters",), lambda m: _within(m, ("shared.services", "shared.bootstrap")))


def deployed_violations(root: Path) -> list[str]:
    """(d)"""
    return _violations(root, ("main.py", "function_app", "shared"),
                       lambda m: _within(m, ("local", "tools", "tests", "bench")))


TRIGGER_IMPORTS = ("function_app", "shared.bootstrap", "shared.services", "shared.api", "shared.settings",
                   "shared.telemetry")


def trigger_violations(root: Path) -> list[str]:
    """(e)"""
    return _violations(root, ("function_app",), lambda m: _ours(m) and not _within(m, TRIGGER_IMPORTS))


def azure_functions_violations(root: Path) -> list[str]:
    """(f), first half"""
    return _violations(root, ("shared",), lambda m: _within(m, ("azure.functions",)))


RULES = {"domain": domain_violations, "services": service_violations, "adapters": adapter_violations,
         "deployed": deployed_violations, "triggers": trigger_violations, "azure_functions": azure_functions_violations}


@pytest.mark.parametrize("rule", RULES.values(), ids=RULES.keys())
def test_the_project_keeps_the_rule(rule):
    assert rule(PROJECT_ROOT) == []


def test_every_trigger_module_registers_a_blueprint():
    """(f), second half"""
    modules = sorted(p for p in (PROJECT_ROOT / "function_app").glob("*.py") if p.name != "__init__.py")
    assert modules
    for module in modules:
        assert "Blueprint()" in module.read_text(), module.name
        assert any(_within(m, ("azure.functions",)) for m in imported_modules(module)), module.name


# Each rule fails when broken --------------------------------------------------------------------------------------
BREAKS = {
    "domain": ("shared/domain/leaky.py", "from shared.adapters.outbox import Outbox\n"),
    "services": ("shared/services/leaky.py", "from shared.adapters.scoring import ScoringClient\n"),
    "adapters": ("shared/adapters/leaky.py", "from shared.services import dispatch\n"),
    "deployed": ("shared/leaky.py", "import local.stack\n"),
    "triggers": ("function_app/leaky.py", "from shared.adapters import storage\n"),
    "azure_functions": ("shared/domain/leaky.py", "import azure.functions as func\n"),
}
KEPT = {  # what each rule allows, so the self-check also shows it is not simply refusing everything
    "domain": ("shared/domain/fine.py", "import json\nimport pandas\nfrom shared.domain.records import AuditRecord\n"),
    "services": ("shared/services/fine.py", "from shared import telemetry\nfrom shared.ports import AuditLog\n"
                                            "from shared.services.dispatch import dispatch\n"),
    "adapters": ("shared/adapters/fine.py", "from shared.ports import PipelineError\nfrom shared import settings\n"),
    "deployed": ("function_app/fine.py", "from shared.bootstrap import services\n"),
    "triggers": ("function_app/fine.py", "import azure.functions as func\nfrom function_app import to_response\n"
                                         "from shared.services.dispatch import dispatch\n"),
    "azure_functions": ("function_app/fine.py", "import azure.functions as func\n"),
}


def _tree(root: Path, relative: str, text: str) -> Path:
    for folder in ("shared/domain", "shared/services", "shared/adapters", "function_app"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text("")
    path = root / relative
    path.write_text(text)
    return root


@pytest.mark.parametrize("name", RULES)
def test_each_rule_fails_when_broken(tmp_path, name):
    relative, text = BREAKS[name]
    assert RULES[name](_tree(tmp_path, relative, text)) == [f"{relative} imports {_first(text)}"]


@pytest.mark.parametrize("name", RULES)
def test_each_rule_allows_what_it_says(tmp_path, name):
    relative, text = KEPT[name]
    assert RULES[name](_tree(tmp_path, relative, text)) == []


def test_a_relative_import_is_resolved_against_its_package(tmp_path):
    root = _tree(tmp_path, "shared/services/leaky.py", "from ..adapters import storage\n")
    assert service_violations(root) == ["shared/services/leaky.py imports shared.adapters.storage"]


def _first(text: str) -> str:
    line = text.splitlines()[0]
    if line.startswith("from "):
        _, module, _, name = line.split()[:4]
        return f"{module}.{name}"
    return line.split()[1]
