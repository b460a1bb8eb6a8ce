"""The local backends: an OpenTelemetry SDK tracer (and meter) provider writing JSON lines to `.local/` or
stderr. The SDK is imported only here, when a local backend is configured."""

from __future__ import annotations

from pathlib import Path

from opentelemetry import trace

from shared.private_files import private_dir
from shared.telemetry.export import METRICS_FILE, SPANS_FILE, json_lines_metric_exporter, json_lines_span_exporter
from shared.telemetry.state import SCOPE, _process, _state


def configure_local(local_dir: Path | None, console: bool, service_name: str) -> None:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

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
    if not _process.globals_set:  # let other OpenTelemetry users in this process (instrumentations) join our traces
        _process.globals_set = True
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(tracer_provider)
        if meter_provider is not None:
            metrics.set_meter_provider(meter_provider)
    _state.tracer_provider, _state.meter_provider = tracer_provider, meter_provider
    # Our own spans always go to the providers configured here, even when the globals belong to an earlier one.
    _state.tracer = tracer_provider.get_tracer(SCOPE)
    _state.meter = meter_provider.get_meter(SCOPE) if meter_provider is not None else None
