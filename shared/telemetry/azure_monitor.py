"""The Application Insights backend: `configure_azure_monitor` (imported only when asked for), every span kept,
and log records masked once more on their way out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opentelemetry import trace

from shared.telemetry.attributes import REDACTED, is_sensitive, scrub
from shared.telemetry.export import SPANS_FILE, json_lines_span_exporter
from shared.telemetry.state import SCOPE, _process, _state


def configure_azure(connection_string: str, local_dir: Path | None, console: bool, service_name: str,
                     logger_name: str, live_metrics: bool, options: Mapping[str, Any]) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor  # heavy: only when asked for
    from opentelemetry import metrics
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

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
    _process.globals_set = True
    _state.tracer = trace.get_tracer(SCOPE)
    _state.meter = metrics.get_meter(SCOPE)


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
