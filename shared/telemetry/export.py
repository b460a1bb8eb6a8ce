"""JSON-lines exporters for the local stack: one object per finished span in spans.jsonl, per data point in
metrics.jsonl (or per span on stderr). The SDK classes are defined on first use, so importing this module does not
import the OpenTelemetry SDK."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from opentelemetry import trace

from shared.private_files import open_private
from shared.telemetry.state import SCOPE

log = logging.getLogger(SCOPE)

SPANS_FILE = "spans.jsonl"
METRICS_FILE = "metrics.jsonl"


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
