"""Spans: one trace from a trigger to the deployment, across processes (W3C trace-context carriers), with the
run id, dataset version and trigger id handed down to every span opened inside."""

from __future__ import annotations

import contextvars
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.telemetry.attributes import MAX_VALUE_CHARS, sanitize, scrub
from shared.telemetry.state import SCOPE, _process, _state

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
    if _process.globals_set and _state.mode == "off":
        return _NOOP_TRACER
    return trace.get_tracer(SCOPE)


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
