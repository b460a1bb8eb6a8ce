"""The process's telemetry configuration, shared by the setup, span and metric modules."""

from __future__ import annotations

import threading
from typing import Any

# The instrumentation scope of our tracer and meter, and the logger of this package (one name for all modules).
SCOPE = "shared.telemetry"


class _State:
    """What `configure()` set up; `shutdown()` resets it."""

    def __init__(self) -> None:
        self.mode = "off"
        self.tracer: Any = None
        self.meter: Any = None
        self.tracer_provider: Any = None  # the providers this module created (local/console); None for azure
        self.meter_provider: Any = None
        self.instruments: dict[tuple[str, str], Any] = {}
        self.secrets: tuple[str, ...] = ()


class _Process:
    """What outlives a `shutdown()`: OpenTelemetry lets a process set its global providers once."""

    globals_set = False


_state = _State()
_process = _Process()
_lock = threading.RLock()
