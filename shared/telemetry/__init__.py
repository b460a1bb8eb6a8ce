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
This package never logs the connection string.

No azure.functions import here: triggers, services, the CLI and the local stack all use it.

One job per module: `setup` (choose, flush and stop the backend), `azure_monitor` and `local_backend` (the
backends), `spans`, `metrics`, `attributes` (sanitizing through shared.redaction), `export` (the JSON-lines
exporters); `state` is what they share.
"""

from shared.telemetry.attributes import MAX_VALUE_CHARS, REDACTED, is_sensitive, sanitize, scrub
from shared.telemetry.export import (
    METRICS_FILE,
    SPANS_FILE,
    json_lines_metric_exporter,
    json_lines_span_exporter,
    span_to_dict,
)
from shared.telemetry.metrics import record_metric
from shared.telemetry.setup import (
    CONNECTION_STRING_SETTING,
    SERVICE_NAME,
    configure,
    configure_from_env,
    flush,
    mode,
    shutdown,
)
from shared.telemetry.spans import INHERITED, Span, current_trace_id, extract, inject, span

__all__ = [
    "CONNECTION_STRING_SETTING", "INHERITED", "MAX_VALUE_CHARS", "METRICS_FILE", "REDACTED", "SERVICE_NAME",
    "SPANS_FILE", "Span", "configure", "configure_from_env", "current_trace_id", "extract", "flush", "inject",
    "is_sensitive", "json_lines_metric_exporter", "json_lines_span_exporter", "mode", "record_metric", "sanitize",
    "scrub", "shutdown", "span", "span_to_dict",
]
