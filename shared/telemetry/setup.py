"""Choosing the backend once per process (Application Insights, local JSON lines, console or nothing), flushing
it and shutting it down."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opentelemetry import trace

from shared import redaction
from shared.telemetry.attributes import scrub
from shared.telemetry.azure_monitor import configure_azure
from shared.telemetry.local_backend import configure_local
from shared.telemetry.state import SCOPE, _lock, _state

log = logging.getLogger(SCOPE)

SERVICE_NAME = "bankmarketing-retrain"
CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"


def configure(*, connection_string: str = "", local_dir: Path | str | None = None, console: bool = False,
              service_name: str = SERVICE_NAME, logger_name: str = "shared", live_metrics: bool = False,
              azure_options: Mapping[str, Any] | None = None) -> str:
    """Set up telemetry for this process; returns the mode: "azure-monitor", "local", "console" or "off".

    Idempotent: once a mode is configured, later calls return it and change nothing (call `shutdown()` first to
    reconfigure local/console modes, e.g. in tests). With a connection string, `local_dir` and `console` add
    their exporters beside Application Insights. `logger_name` is the logger whose records go to Application
    Insights ("shared": the services and adapters; "" would be every logger, the Azure SDK's too).
    `azure_options` are passed on to `configure_azure_monitor` (e.g. `instrumentation_options`,
    `disable_offline_storage`, `storage_directory`, `sampling_ratio`).
    """
    with _lock:
        if _state.mode != "off":
            return _state.mode
        directory = Path(local_dir) if local_dir else None
        if connection_string:
            _state.secrets = _secrets_of(connection_string)
            redaction.register(*_state.secrets)
            try:
                configure_azure(connection_string, directory, console, service_name, logger_name, live_metrics,
                                azure_options or {})
                _state.mode = "azure-monitor"
                return _state.mode
            except Exception as exc:  # telemetry must never stop the service
                log.warning("Application Insights telemetry is off (%s: %s); falling back to %s",
                            type(exc).__name__, scrub(str(exc)),
                            "local spans" if directory else "the console" if console else "nothing")
        if directory is not None or console:
            configure_local(directory, console, service_name)
            _state.mode = "local" if directory is not None else "console"
        return _state.mode


def configure_from_env(env: Mapping[str, str] | None = None, *, local_dir: Path | str | None = None,
                       console: bool = False, **options: Any) -> str:
    """`configure()` with the connection string from APPLICATIONINSIGHTS_CONNECTION_STRING (and OTEL_SERVICE_NAME
    as the service name when set): the app setting the Functions host and the Azure portal use."""
    env = os.environ if env is None else env
    options.setdefault("service_name", env.get("OTEL_SERVICE_NAME") or SERVICE_NAME)
    return configure(connection_string=env.get(CONNECTION_STRING_SETTING, "").strip(), local_dir=local_dir,
                     console=console, **options)


def mode() -> str:
    return _state.mode


def flush(timeout_s: float = 10.0) -> None:
    """Export what is buffered now (before a short-lived process exits, or in tests)."""
    millis = int(timeout_s * 1000)
    for provider in _providers():
        try:
            provider.force_flush(millis)
        except Exception as exc:  # flushing is best effort
            log.debug("telemetry flush failed: %s", type(exc).__name__)


def shutdown() -> None:
    """Flush and stop this module's exporters and forget the configuration, so `configure()` can run again.

    In azure-monitor mode the global providers are shut down too; OpenTelemetry does not allow replacing them,
    so a process that shut Application Insights down does not get it back.
    """
    with _lock:
        for provider in _providers():
            try:
                provider.shutdown()
            except Exception as exc:  # stopping is best effort
                log.debug("telemetry shutdown failed: %s", type(exc).__name__)
        _state.__init__()


def _providers() -> list[Any]:
    if _state.mode == "off":
        return []
    if _state.tracer_provider is not None:  # local / console
        return [p for p in (_state.tracer_provider, _state.meter_provider) if p is not None]
    from opentelemetry import metrics
    from opentelemetry._logs import get_logger_provider

    found = [trace.get_tracer_provider(), metrics.get_meter_provider(), get_logger_provider()]
    return [p for p in found if hasattr(p, "force_flush")]


def _secrets_of(connection_string: str) -> tuple[str, ...]:
    parts = [connection_string]
    for item in connection_string.split(";"):
        name, _, value = item.partition("=")
        if name.strip().lower() == "instrumentationkey" and value.strip():
            parts.append(value.strip())
    return tuple(p for p in parts if len(p) >= redaction.MIN_SECRET_CHARS)
