"""The Event Grid extension's webhook (`POST /runtime/webhooks/eventgrid?functionName=NAME`): subscription
validation, notifications (one invocation per event), `Unsubscribe`.

As the extension answers (azure-sdk-for-net sdk/eventgrid/Microsoft.Azure.WebJobs.Extensions.EventGrid/src/
TriggerBinding/HttpRequestProcessor.cs): the `aeg-event-type` header is compared case-insensitively;
`SubscriptionValidation` answers the code, `Notification` invokes, `Unsubscribe` answers 202 and any other value
(or none) answers 400."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from local.functions_host.invoker import Invoker
from local.functions_host.loader import IndexedFunction

log = logging.getLogger("functions_host")

VALIDATION = "SubscriptionValidation"
NOTIFICATION = "Notification"
UNSUBSCRIBE = "Unsubscribe"


@dataclass
class WebhookAnswer:
    status: int
    body: Any = None  # JSON-able, or a short text reason, or None for an empty body


def parse_events(body: bytes) -> list[dict]:
    """Event Grid posts a JSON array; a single object (a CloudEvent) is taken as a batch of one."""
    try:
        doc = json.loads(body.decode("utf-8") if body else "")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"the body is not valid JSON: {exc.__class__.__name__}") from None
    events = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(e, dict) for e in events):
        raise ValueError("expected a JSON array of event objects")
    return events


def to_binding(event: dict):
    """The `func.EventGridEvent` (or `func.CloudEvent`) the worker builds for one event."""
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})


async def handle(fn: IndexedFunction, event_type: str | None, body: bytes, invoker: Invoker) -> WebhookAnswer:
    kind = (event_type or "").strip()
    if kind.lower() == UNSUBSCRIBE.lower():
        return WebhookAnswer(202)
    if kind.lower() not in (VALIDATION.lower(), NOTIFICATION.lower()):
        return WebhookAnswer(400, f"missing or unknown aeg-event-type header: {kind or '(none)'}")
    try:
        events = parse_events(body)
    except ValueError as exc:
        return WebhookAnswer(400, str(exc))
    if kind.lower() == VALIDATION.lower():
        code = next((e.get("data", {}).get("validationCode") for e in events if isinstance(e.get("data"), dict)),
                    None)
        if not code:
            return WebhookAnswer(400, "no data.validationCode in the validation event")
        log.info("Event Grid subscription validated for 'Functions.%s'", fn.name)
        return WebhookAnswer(200, {"validationResponse": code})
    try:
        bindings = [to_binding(e) for e in events]
    except (TypeError, ValueError) as exc:
        return WebhookAnswer(400, f"malformed event: {exc}")
    failed = 0
    for binding in bindings:
        reason = f"EventGrid trigger fired (id={getattr(binding, 'id', None)})"
        result = await invoker.invoke(fn, binding, reason=reason)
        failed += 0 if result.ok else 1
    return WebhookAnswer(500 if failed else 202)
