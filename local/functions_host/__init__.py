"""A small local Azure Functions host for Python v2 programming-model apps (see host.py for the wiring).

Public API: `index_app`, `IndexedFunction` (loader), `load_or_create_keys`, `HostKeys` (keys), `run_host`,
`FunctionsHost`, `HostConfig` (host). Run it with `python -m local.functions_host --script-root DIR`.
"""

from local.functions_host.keys import HostKeys, load_or_create_keys
from local.functions_host.loader import IndexedFunction, index_app

__all__ = ["HostKeys", "IndexedFunction", "index_app", "load_or_create_keys"]
