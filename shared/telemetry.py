"""Traces, logs and metrics: Application Insights in Azure, JSON lines in `.local/` or the console locally.

One trace follows a retrain from the trigger to the deployment, across processes and triggers:

    with telemetry.span("blob_upload", kind="consumer", blob=name):
        ...
        with telemetry.span("submit_pipeline") as s:
            run = pipeline.submit(...)
            s.set(run_id=run.run_id)          # also set on blob_upload (still open) and on every span opened later
            carrier = telemetry.inject()      # {"traceparent": "00-<trace>-<span>-01"}: store it with the run
    ...
    # later, in another process (the Event Grid completion handler):
    with telemetry.span("run_completed", kind="consumer", parent=carrier, run_id=run_id):
        ...                                   # same trace id as the upload

`configure()` chooses the backend once per process:

- a connection string: `azure.monitor.opentelemetry.configure_azure_monitor` (traces, logs of the `shared`
  loggers and metrics to Application Insights; the SDK is imported only then, never at import time);
- otherwise `local_dir`: an OpenTelemetry SDK tracer provider appending one JSON object per finished span to
  `local_dir/spans.jsonl` (and metrics to `local_dir/metrics.jsonl`);
- otherwise `console`: one JSON line per finished span on stderr;
- otherwise nothing: `span()` still works (no-op spans that carry a parent's trace context on), nothing is
  recorded.

Attribute values pass through `sanitize()`: keys that name a secret (key, token, secret, password,
authorization, connection string, credential, signature, cookie, sas) are redacted, and values that embed one
(`AccountKey=...`, `sig=...`, `Bearer ...`, the configured connection string or instrumentation key) are masked.
This module never logs the connection string.

No azure.functions import here: triggers, services, the CLI and the local stack all use it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared import redaction
from shared.private_files import open_private, private_dir

log = logging.getLogger(__name__)

SERVICE_NAME = "bankmarketing-retrain"
CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
SPANS_FILE = "spans.jsonl"
METRICS_FILE = "metrics.jsonl"
REDACTED = redaction.REDACTED
MAX_VALUE_CHARS = 8192  # Application Insights keeps custom property values up to 8 KiB
# Attributes a span hands down to the spans opened inside it (so every span of a retrain carries the run id).
INHERITED = ("run_id", "dataset_version", "trigger_id")

_KINDS = {
    "internal": trace.SpanKind.INTERNAL,
    "server": trace.SpanKind.SERVER,  # an HTTP trigger: a "request" in Application Insights
    "consumer": trace.SpanKind.CONSUMER,  # a blob / Event Grid / timer trigger: also a "request"
    "client": trace.SpanKind.CLIENT,  # an outgoing call: a "dependency"
    "producer": trace.SpanKind.PRODUCER,
}

_carrier_propagator = TraceContextTextMapPropagator()
_NOOP_TRACER = trace.NoOpTracer()
_open: contextvars.ContextVar[Span | None] = contextvars.ContextVar("telemetry_open_span", default=None)


class _State:
    def __init__(self) -> None:
        self.mode = "off"
        self.tracer: Any = None
        self.meter: Any = None
        self.tracer_provider: Any = None  # the providers this module created (local/console); None for azure
        self.meter_provider: Any = None
        self.instruments: dict[tuple[str, str], Any] = {}
        self.secrets: tuple[str, ...] = ()


_state = _State()
_lock = threading.RLock()
_globals_set = False  # OpenTelemetry lets a process set its global providers once


# ----------------------------------------------------------------------------------------------- configuration


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
                _configure_azure(connection_string, directory, console, service_name, logger_name, live_metrics,
                                 azure_options or {})
                _state.mode = "azure-monitor"
                return _state.mode
            except Exception as exc:  # telemetry must never stop the service
                log.warning("Application Insights telemetry is off (%s: %s); falling back to %s",
                            type(exc).__name__, scrub(str(exc)),
                            "local spans" if directory else "the console" if console else "nothing")
        if directory is not None or console:
            _configure_local(directory, console, service_name)
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
    return tuple(p for p in parts if len(p) >= 8)


def _configure_azure(connection_string: str, local_dir: Path | None, console: bool, service_name: str,
                     logger_name: str, live_metrics: bool, options: Mapping[str, Any]) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor  # heavy: only when asked for
    from opentelemetry import metrics
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    global _globals_set
    processors = list(options.get("span_processors", []))
    if local_dir is not None:
        processors.append(SimpleSpanProcessor(json_lines_span_exporter(local_dir / SPANS_FILE)))
    if console:
        processors.append(SimpleSpanProcessor(json_lines_span_exporter(None)))
    # Keep every span (ratio 1.0). The distro's default, a rate-limited sampler (5 traces/s), samples local
    # children afresh and, in a burst such as a cold start, dropped the child spans (and a continued remote
    # parent) of sampled traces in tests/integration/test_telemetry_ingestion.py: no "one trace from trigger to
    # deploy". This service makes a few traces per retrain. OTEL_TRACES_SAMPLER or azure_options override it.
    # Log records reach Application Insights through OpenTelemetry's handler, which reads exception details
    # from the record itself: mask body and attributes once more on the way out.
    log_processors = [*options.get("log_record_processors", []), _redacting_log_processor()]
    kwargs = {"logger_name": logger_name, "enable_live_metrics": live_metrics, "sampling_ratio": 1.0,
              "resource": Resource.create({"service.name": service_name}), **options,
              "connection_string": connection_string, "span_processors": processors,
              "log_record_processors": log_processors}
    configure_azure_monitor(**kwargs)
    _globals_set = True
    _state.tracer = trace.get_tracer(__name__)
    _state.meter = metrics.get_meter(__name__)


def _redacting_log_processor() -> Any:
    """An OpenTelemetry LogRecordProcessor that masks secrets in each record's body and attributes."""
    from opentelemetry.sdk._logs import LogRecordProcessor

    class RedactingLogProcessor(LogRecordProcessor):
        def on_emit(self, log_record: Any) -> None:
            record = getattr(log_record, "log_record", log_record)
            if isinstance(getattr(record, "body", None), str):
                record.body = scrub(record.body)
            attributes = getattr(record, "attributes", None)
            if attributes:
                for key in list(attributes):
                    value = attributes[key]
                    if is_sensitive(key) and not key.startswith("code."):
                        attributes[key] = REDACTED
                    elif isinstance(value, str):
                        attributes[key] = scrub(value)

        emit = on_emit

        def shutdown(self) -> None:
            return None

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    return RedactingLogProcessor()


def _configure_local(local_dir: Path | None, console: bool, service_name: str) -> None:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    global _globals_set
    resource = Resource.create({"service.name": service_name})
    tracer_provider = TracerProvider(resource=resource)
    if local_dir is not None:
        private_dir(local_dir)
        tracer_provider.add_span_processor(SimpleSpanProcessor(json_lines_span_exporter(local_dir / SPANS_FILE)))
    if console:
        tracer_provider.add_span_processor(SimpleSpanProcessor(json_lines_span_exporter(None)))
    meter_provider = None
    if local_dir is not None:
        reader = PeriodicExportingMetricReader(json_lines_metric_exporter(local_dir / METRICS_FILE),
                                               export_interval_millis=15_000)
        meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
    if not _globals_set:  # let other OpenTelemetry users in this process (instrumentations) join the same traces
        _globals_set = True
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(tracer_provider)
        if meter_provider is not None:
            metrics.set_meter_provider(meter_provider)
    _state.tracer_provider, _state.meter_provider = tracer_provider, meter_provider
    # Our own spans always go to the providers configured here, even when the globals belong to an earlier one.
    _state.tracer = tracer_provider.get_tracer(__name__)
    _state.meter = meter_provider.get_meter(__name__) if meter_provider is not None else None


# ------------------------------------------------------------------------------------------------------- spans


class Span:
    """What `span()` yields: set attributes (sanitized), add events, mark failure, read the ids."""

    def __init__(self, span: Any, inherited: dict[str, Any], parent: Span | None) -> None:
        self.raw = span  # the OpenTelemetry span
        self.inherited = inherited  # what the spans opened inside this one start with
        self.parent = parent  # the enclosing span() in this process, if any

    def set(self, **attributes: Any) -> Span:
        """Set attributes. `run_id`, `dataset_version` and `trigger_id` also reach the spans opened inside from now
        on, and the enclosing spans still open that lack them (the run id is known only once submitted)."""
        clean = sanitize(attributes)
        if clean:
            self.raw.set_attributes(clean)
        shared = {k: clean[k] for k in INHERITED if k in clean}
        self.inherited.update(shared)
        outer = self.parent
        while shared and outer is not None:
            missing = {k: v for k, v in shared.items() if k not in outer.inherited}
            if missing and outer.raw.is_recording():
                outer.raw.set_attributes(missing)
                outer.inherited.update(missing)
            outer = outer.parent
        return self

    def event(self, name: str, **attributes: Any) -> Span:
        self.raw.add_event(name, sanitize(attributes))
        return self

    def fail(self, description: str) -> Span:
        """Mark the span failed without an exception (an outcome such as a rejected upload or a rollback)."""
        self.raw.set_status(trace.Status(trace.StatusCode.ERROR, scrub(description)[:1024]))
        return self

    @property
    def trace_id(self) -> str:
        ctx = self.raw.get_span_context()
        return trace.format_trace_id(ctx.trace_id) if ctx.is_valid else ""

    @property
    def span_id(self) -> str:
        ctx = self.raw.get_span_context()
        return trace.format_span_id(ctx.span_id) if ctx.is_valid else ""


@contextmanager
def span(name: str, *, parent: Mapping[str, Any] | None = None, kind: str = "internal",
         **attributes: Any) -> Iterator[Span]:
    """A span around the block: a child of the current span, or of `parent` (a carrier from `inject()`, or any
    mapping holding a `traceparent`, such as a run's stored tags) when given. An exception leaving the block is
    recorded (message and stack scrubbed), sets the status to ERROR and is re-raised; a block that ends normally
    is OK unless `fail()` was called. `run_id`, `dataset_version` and `trigger_id` are inherited by the spans
    opened inside (see `Span.set`)."""
    tracer = _state.tracer or _unconfigured_tracer()
    context = extract(parent) if parent else None
    clean = sanitize(attributes)
    enclosing = _open.get()
    inherited = dict(enclosing.inherited) if enclosing is not None and context is None else {}
    inherited.update({k: clean[k] for k in INHERITED if k in clean})
    otel_span = tracer.start_span(name, context=context, kind=_KINDS.get(kind, trace.SpanKind.INTERNAL),
                                  attributes={**inherited, **clean}, record_exception=False,
                                  set_status_on_exception=False)
    handle = Span(otel_span, inherited, enclosing if context is None else None)
    token = _open.set(handle)
    try:
        with trace.use_span(otel_span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield handle
    except Exception as exc:
        _record_exception(otel_span, exc)
        raise
    else:
        status = getattr(otel_span, "status", None)
        if status is not None and status.status_code == trace.StatusCode.UNSET:
            otel_span.set_status(trace.Status(trace.StatusCode.OK))
    finally:
        try:
            _open.reset(token)
        except ValueError:  # the block ended in another context (a generator closed elsewhere)
            pass
        otel_span.end()


def _unconfigured_tracer() -> Any:
    """Not configured: the global tracer (another library's provider, or no-op spans that still carry a parent's
    context on), unless the global provider is one of ours that `shutdown()` stopped."""
    if _globals_set and _state.mode == "off":
        return _NOOP_TRACER
    return trace.get_tracer(__name__)


def _record_exception(otel_span: Any, exc: BaseException) -> None:
    message = scrub(str(exc))
    stack = scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    otel_span.add_event("exception", {"exception.type": type(exc).__qualname__, "exception.message": message,
                                      "exception.stacktrace": stack[-MAX_VALUE_CHARS:], "exception.escaped": True})
    otel_span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {message}"[:1024]))


def current_trace_id() -> str:
    """The 32-hex-digit id of the current trace ("" outside any span): the Application Insights operation id."""
    ctx = trace.get_current_span().get_span_context()
    return trace.format_trace_id(ctx.trace_id) if ctx.is_valid else ""


def inject() -> dict[str, str]:
    """The current span as a W3C trace-context carrier ({"traceparent": ..., maybe "tracestate": ...}); {} outside
    any span. Store it where the next step finds it (the run record, run tags) and pass it to `span(parent=)`."""
    carrier: dict[str, str] = {}
    _carrier_propagator.inject(carrier)
    return carrier


def extract(carrier: Mapping[str, Any]) -> Any:
    """An OpenTelemetry context from a carrier (keys matched case-insensitively; other keys ignored). A missing or
    malformed traceparent gives an empty context: the span then starts a new trace."""
    lowered = {str(k).lower(): str(v) for k, v in carrier.items() if isinstance(v, str)}
    return _carrier_propagator.extract(lowered)


# ----------------------------------------------------------------------------------------------------- metrics


def record_metric(name: str, value: float, *, kind: str = "histogram", unit: str = "", **attributes: Any) -> None:
    """Record a measurement: `kind="histogram"` (durations, sizes, scores) or `kind="counter"` (monotonic counts;
    `value` is the increment). A no-op until `configure()` set up a backend with metrics."""
    meter = _state.meter
    if meter is None:
        return
    key = (kind, name)
    instrument = _state.instruments.get(key)
    if instrument is None:
        with _lock:
            instrument = _state.instruments.get(key)
            if instrument is None:
                if kind == "counter":
                    instrument = meter.create_counter(name, unit=unit)
                elif kind == "histogram":
                    instrument = meter.create_histogram(name, unit=unit)
                else:
                    raise ValueError(f"metric kind must be 'histogram' or 'counter', got {kind!r}")
                _state.instruments[key] = instrument
    clean = sanitize(attributes)
    if kind == "counter":
        instrument.add(value, clean)
    else:
        instrument.record(value, clean)


# ------------------------------------------------------------------------------------------------ sanitization


def is_sensitive(key: str) -> bool:
    """Whether an attribute named `key` holds a secret (shared.redaction's rule)."""
    return redaction.is_sensitive(key)


def scrub(text: str) -> str:
    """Mask secrets embedded in free text (shared.redaction: registered secret settings and keys, connection
    string and SAS fields, bearer tokens) and the configured Application Insights connection string / key."""
    return redaction.redact(text, extra=_state.secrets)


def sanitize(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as OpenTelemetry accepts them (str, bool, int, float or a homogeneous sequence of them), with
    secrets redacted. None values are dropped; other values become scrubbed strings (mappings as JSON)."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        key = str(key)
        out[key] = REDACTED if is_sensitive(key) else _clean_value(value)
    return out


def _clean_value(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)[:MAX_VALUE_CHARS]
    if isinstance(value, Mapping):
        return scrub(json.dumps(_redact_tree(value), default=str, sort_keys=True))[:MAX_VALUE_CHARS]
    if isinstance(value, Sequence | set | frozenset) and not isinstance(value, bytes | bytearray):
        items = [v for v in value if v is not None]
        kinds = {type(v) for v in items}
        if len(kinds) <= 1 and kinds <= {str, bool, int, float}:
            return tuple(scrub(v)[:MAX_VALUE_CHARS] if isinstance(v, str) else v for v in items)
        return scrub(json.dumps(_redact_tree(items), default=str))[:MAX_VALUE_CHARS]
    return scrub(str(value))[:MAX_VALUE_CHARS]


def _redact_tree(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): REDACTED if is_sensitive(str(k)) else _redact_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_tree(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------- exporters


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def span_to_dict(readable: Any) -> dict[str, Any]:
    """One finished span (an SDK ReadableSpan) as the JSON object written to spans.jsonl."""
    ctx = readable.context
    parent = readable.parent
    start, end = readable.start_time, readable.end_time
    resource = getattr(readable, "resource", None)
    return {
        "name": readable.name,
        "trace_id": trace.format_trace_id(ctx.trace_id),
        "span_id": trace.format_span_id(ctx.span_id),
        "parent_id": trace.format_span_id(parent.span_id) if parent is not None and parent.is_valid else None,
        "kind": readable.kind.name,
        "start_time": _iso(start),
        "end_time": _iso(end),
        "duration_ms": round((end - start) / 1e6, 3) if start is not None and end is not None else None,
        "status": readable.status.status_code.name,
        "status_description": readable.status.description or "",
        "attributes": {k: _jsonable(v) for k, v in (readable.attributes or {}).items()},
        "events": [{"name": e.name, "time": _iso(e.timestamp),
                    "attributes": {k: _jsonable(v) for k, v in (e.attributes or {}).items()}}
                   for e in readable.events],
        "service": (resource.attributes.get("service.name") if resource is not None else None),
    }


class _LineWriter:
    """Appends whole lines to a file (one os.write per line, O_APPEND: safe across threads and processes) or to
    the current sys.stderr when `path` is None."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        data = "".join(line + "\n" for line in lines)
        with self._lock:
            if self.path is None:
                sys.stderr.write(data)
                sys.stderr.flush()
                return
            fd = open_private(self.path)  # 0600 in a 0700 folder, narrowed if it exists wider
            try:
                for line in lines:
                    os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)


@lru_cache(maxsize=1)
def _exporter_classes() -> tuple[type, type]:
    """The SDK exporter classes, defined on first use so importing this module does not import the SDK."""
    from opentelemetry.sdk.metrics import Counter, Histogram
    from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter, MetricExportResult
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class JsonLinesSpanExporter(SpanExporter):
        """One JSON object per finished span, appended to a file (or written to stderr)."""

        def __init__(self, path: Path | None) -> None:
            self.writer = _LineWriter(path)
            self.stopped = False

        def export(self, spans):
            if self.stopped:
                return SpanExportResult.FAILURE
            try:
                self.writer.write([json.dumps(span_to_dict(s), default=str) for s in spans])
            except OSError as exc:
                log.debug("could not write spans: %s", exc)
                return SpanExportResult.FAILURE
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            self.stopped = True

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    class JsonLinesMetricExporter(MetricExporter):
        """One JSON object per data point (delta temporality: what was recorded since the last export)."""

        def __init__(self, path: Path) -> None:
            super().__init__(preferred_temporality={Counter: AggregationTemporality.DELTA,
                                                    Histogram: AggregationTemporality.DELTA})
            self.writer = _LineWriter(path)
            self.stopped = False

        def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs):
            if self.stopped:
                return MetricExportResult.FAILURE
            lines = [json.dumps(_point_to_dict(metric, point), default=str)
                     for resource_metrics in metrics_data.resource_metrics
                     for scope_metrics in resource_metrics.scope_metrics
                     for metric in scope_metrics.metrics
                     for point in metric.data.data_points]
            try:
                self.writer.write(lines)
            except OSError as exc:
                log.debug("could not write metrics: %s", exc)
                return MetricExportResult.FAILURE
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
            self.stopped = True

    return JsonLinesSpanExporter, JsonLinesMetricExporter


def json_lines_span_exporter(path: Path | None) -> Any:
    """An OpenTelemetry SpanExporter appending one JSON object per finished span to `path` (stderr for None)."""
    return _exporter_classes()[0](path)


def json_lines_metric_exporter(path: Path) -> Any:
    """An OpenTelemetry MetricExporter appending one JSON object per data point to `path`."""
    return _exporter_classes()[1](path)


def _point_to_dict(metric: Any, point: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"name": metric.name, "unit": metric.unit or "", "time": _iso(point.time_unix_nano),
                           "start_time": _iso(getattr(point, "start_time_unix_nano", None)),
                           "attributes": {k: _jsonable(v) for k, v in (point.attributes or {}).items()}}
    if hasattr(point, "bucket_counts"):  # histogram
        row.update(type="histogram", count=point.count, sum=point.sum, min=point.min, max=point.max)
    else:
        row.update(type="sum" if hasattr(metric.data, "is_monotonic") else "gauge", value=point.value)
    return row
