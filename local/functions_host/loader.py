"""Index a Python v2 programming-model app the way the Python worker does.

The worker puts the script root first on sys.path, imports the module named by the app setting
`PYTHON_SCRIPT_FILE_NAME` (default `function_app.py`) with importlib, looks through the module's top-level names
for exactly one `azure.functions.FunctionRegister` instance and asks it for its functions.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("functions_host")

DEFAULT_SCRIPT_FILE = "function_app.py"


@dataclass
class IndexedFunction:
    name: str
    trigger_type: str | None
    bindings: list[dict[str, Any]]
    func: Callable[..., Any] = field(repr=False)

    @property
    def full_name(self) -> str:
        """The id the real host uses in storage paths and poison messages."""
        return f"Host.Functions.{self.name}"

    @property
    def trigger(self) -> dict[str, Any] | None:
        return next((b for b in self.bindings if b.get("type") == self.trigger_type
                     and str(b.get("direction", "IN")).upper() == "IN"), None)

    @property
    def trigger_param(self) -> str | None:
        trigger = self.trigger
        return trigger.get("name") if trigger else None

    @property
    def output_bindings(self) -> list[dict[str, Any]]:
        return [b for b in self.bindings if str(b.get("direction", "")).upper() in ("OUT", "INOUT")]

    @property
    def input_bindings(self) -> list[dict[str, Any]]:
        """Non-trigger input bindings (blob input, table input, ...)."""
        trigger = self.trigger
        return [b for b in self.bindings if b is not trigger and str(b.get("direction", "IN")).upper() == "IN"]

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)


def script_file_name(script_file: str | None = None) -> str:
    return script_file or os.environ.get("PYTHON_SCRIPT_FILE_NAME") or DEFAULT_SCRIPT_FILE


def _find_app(module: Any, script_file: str) -> Any:
    from azure.functions import FunctionRegister

    app = None
    for attr in module.__dir__():
        candidate = getattr(module, attr, None)
        if isinstance(candidate, FunctionRegister):
            if app is not None:
                raise ValueError(f"More than one {type(app).__name__} or other top level function app instances "
                                 f"are defined.")
            app = candidate
    if app is None:
        raise ValueError(f"Could not find top level function app instances in {script_file}.")
    return app


def index_app(script_root: Path, script_file: str | None = None) -> list[IndexedFunction]:
    """Import the app's entry module and return its functions (all trigger types, unfiltered).

    Raises FileNotFoundError when the entry file is missing (the real worker would fall back to the legacy
    function.json model, which this host does not have) and ValueError for zero or several app instances.
    """
    root = Path(script_root).resolve()
    script = script_file_name(script_file)
    entry = root / script
    if not entry.is_file():
        raise FileNotFoundError(f"Script file {script} not found in {root}; set the app setting "
                                f"PYTHON_SCRIPT_FILE_NAME to the entry file of the app")
    module_name = Path(script).stem
    if (root / module_name / "__init__.py").is_file():
        log.warning("The directory %s/ shadows %s: importing '%s' loads the package, as the Python worker would. "
                    "Rename the entry file and set PYTHON_SCRIPT_FILE_NAME.", module_name, script, module_name)
    if not sys.path or sys.path[0] != str(root):
        sys.path.insert(0, str(root))
    module = importlib.import_module(module_name)
    app = _find_app(module, script)
    functions = []
    for fn in app.get_functions():
        trigger = fn.get_trigger()
        bindings = [json.loads(raw) for raw in fn.get_raw_bindings()]
        functions.append(IndexedFunction(name=fn.get_function_name(),
                                         trigger_type=trigger.get_binding_name() if trigger else None,
                                         bindings=bindings, func=fn.get_user_function()))
    return functions
