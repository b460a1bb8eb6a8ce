"""Admission of the signed API routes (`POST /api/retrain`, `POST /api/drift-check`): what a request must pass
before it may cost anything, and what a refusal costs.

Order, cheapest first, and what each step writes:

1. the caller's refusal count this minute (`RejectionLog.throttled`, one point read): over `REJECT_LIMIT` -> 429
   with `Retry-After`, nothing written;
2. method (405), size from `Content-Length` before the body is read (413 above 1 MB), media type (415);
3. signature and timestamp window (401, shared.domain.webhook_signature), replay guard (401; one insert);
4. per-caller rate limit of the route (429) — from here on the caller is authenticated.

A refusal in steps 2-3 is counted in the caller's aggregate row for the minute (RejectionLog: a count and the last
reasons), never as an audit record, so a flood of unsigned requests cannot grow the audit trail. Authenticated
requests (step 4 on) keep one audit record each, written by the route.

The caller is the address the front end saw (`WebhookRequest.client`, the last X-Forwarded-For entry).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from shared.domain.outcomes import Outcome
from shared.domain.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, replay_key, verify
from shared.ports import RateLimit, Refusals, Replays
from shared.telemetry import Span

MAX_BODY = 1024 * 1024  # what the API routes accept (413 above, from Content-Length before the body is read)
# The Functions host's own cap on every request body (app setting FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, default 100 MB:
# https://learn.microsoft.com/azure/azure-functions/functions-app-settings#functions_request_body_size_limit, applied
# by azure-functions-host src/WebJobs.Script.WebHost/Middleware/HttpRequestSizeMiddleware.cs to every request). It
# must still fit an Event Grid delivery to /runtime/webhooks/eventgrid: one event of up to 1 MB, sent as a JSON
# array (https://learn.microsoft.com/azure/event-grid/delivery-and-retry), hence 1 MB + 64 KB of envelope. The
# API routes refuse at MAX_BODY themselves, with a problem document, below this cap. infra/ and the local stack
# set the setting to this value; tests/unit/test_infra.py keeps them equal.
HOST_BODY_LIMIT = MAX_BODY + 64 * 1024
TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
          413: "Content Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests", 502: "Bad Gateway",
          503: "Service Unavailable"}
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"  # RFC 9457


@dataclass(frozen=True)
class HttpAnswer:
    """What every HTTP route answers, in no web framework's terms: the services build it, one helper in the
    trigger package (function_app.to_response) turns it into the host's response. `body` is a JSON document —
    sent as `application/problem+json` for an error status, `application/json` otherwise, unless `mimetype` says —
    or bytes ready to send with their `mimetype`."""

    status: int
    body: dict | bytes
    headers: dict[str, str] = field(default_factory=dict)
    mimetype: str | None = None

    @property
    def content_type(self) -> str:
        return self.mimetype or (JSON if self.status < 400 else PROBLEM_JSON)


@dataclass(frozen=True)
class WebhookRequest:
    """What the trigger hands over (no azure.functions here); `headers` keys are matched case-insensitively."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

    @property
    def client(self) -> str:
        """The caller's address as the front end saw it: the LAST X-Forwarded-For entry (the front end appends the
        address it saw; earlier entries are whatever the caller claimed), port removed."""
        forwarded = (self.header("x-forwarded-for") or "").split(",")[-1].strip()
        if forwarded.startswith("["):
            return forwarded[1:].split("]")[0]
        if forwarded.count(":") == 1:
            return forwarded.split(":")[0]
        return forwarded or "unknown"

    @property
    def declared_length(self) -> int | None:
        return declared_length(self.headers)


class Refused(Exception):
    """A refusal: `status`, a `detail` that says what to fix (never a secret), extra response headers."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}

    def answer(self, instance: str) -> HttpAnswer:
        return problem(self.status, self.detail, self.headers, instance=instance)


def problem(status: int, detail: str, headers: dict[str, str] | None = None, *, instance: str | None = None,
            **extra) -> HttpAnswer:
    """An RFC 9457 problem document (`instance`: the route, when given)."""
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    if instance is not None:
        body["instance"] = instance
    return HttpAnswer(status, {**body, **extra}, headers or {}, mimetype=PROBLEM_JSON)


def declared_length(headers: Mapping[str, str]) -> int | None:
    """`Content-Length` as an integer; None when absent or not a plain decimal number."""
    value = next((v for k, v in headers.items() if k.lower() == "content-length"), None)
    text = (value or "").strip()
    return int(text) if text.isdigit() and len(text) <= 18 else None


def read_body(headers: Mapping[str, str], get_body: Callable[[], bytes], limit: int = MAX_BODY) -> bytes:
    """The body — or b"" without reading it when `Content-Length` already says it is over `limit` (the guard then
    answers 413 from the header)."""
    length = declared_length(headers)
    if length is not None and length > limit:
        return b""
    return get_body()


def check_shape(request: WebhookRequest, *, instance: str, media: str | None = "application/json",
                max_body: int = MAX_BODY) -> None:
    """405 (POST only), 413 (from `Content-Length` first, then the bytes), 415 (when `media` is set; with None any
    Content-Type passes and an empty body needs none)."""
    method = (request.method or "").upper()
    if method != "POST":
        raise Refused(405, f"{method} is not allowed on {instance}; use POST", {"Allow": "POST"})
    size = max(request.declared_length or 0, len(request.body))
    if size > max_body:
        raise Refused(413, f"body is {size} bytes; the limit is {max_body} bytes (1 MB)")
    if media is not None:
        sent = (request.header("content-type") or "").split(";")[0].strip().lower()
        if sent != media:
            raise Refused(415, f"Content-Type must be {media}, got {sent or 'none'!r}", {"Accept-Post": media})


def authenticate(request: WebhookRequest, *, secrets: tuple[str, ...], replay: Replays, tolerance_s: int, now: float,
                 replay_hint: str = "") -> int:
    """The signed timestamp, or Refused: 503 without a configured secret, 401 for a missing, malformed, stale or
    wrong signature and for a replay (the same signed bytes again)."""
    if not secrets:
        raise Refused(503, "the webhook secret is not configured on the service (app setting WEBHOOK_SECRET); "
                           "no signed request can be checked")
    try:
        timestamp = verify(secrets, request.body, request.header(SIGNATURE_HEADER), request.header(TIMESTAMP_HEADER),
                           now=now, tolerance_s=tolerance_s)
    except SignatureError as exc:
        raise Refused(401, exc.detail) from None
    if not replay.remember(replay_key(request.body, timestamp), timestamp, now):
        raise Refused(401, "this signed request was already received (replay); sign every request with a fresh "
                           f"{TIMESTAMP_HEADER}{replay_hint}")
    return timestamp


def check_rate(rate: RateLimit | None, client: str, now: float) -> None:
    """The route's per-caller rate limit (authenticated callers): 429 with Retry-After when over it."""
    if rate is None or not rate.enabled:
        return
    decision = rate.hit(client, now)
    if not decision.allowed:
        raise Refused(429, f"too many requests from this caller; retry after {decision.retry_after_s} s",
                      {"Retry-After": str(decision.retry_after_s)})


def admit(request: WebhookRequest, *, instance: str, secrets: tuple[str, ...], replay: Replays,
          rejections: Refusals | None, tolerance_s: int, now: float, media: str | None = "application/json",
          max_body: int = MAX_BODY, replay_hint: str = "") -> HttpAnswer | None:
    """None when the request is authentic (steps 1-3 of the module docstring); otherwise the refusal to answer,
    already counted in the caller's aggregate (`rejections`, a RejectionLog; None: not counted or throttled)."""
    client = request.client
    if rejections is not None:
        decision = rejections.throttled(client, now)
        if not decision.allowed:
            return problem(429, f"too many refused requests from this caller in the last minute (more than "
                                f"{rejections.limit}); sign requests with the webhook secret and retry after "
                                f"{decision.retry_after_s} s", {"Retry-After": str(decision.retry_after_s)},
                           instance=instance)
    try:
        check_shape(request, instance=instance, media=media, max_body=max_body)
        authenticate(request, secrets=secrets, replay=replay, tolerance_s=tolerance_s, now=now,
                     replay_hint=replay_hint)
    except Refused as refused:
        if rejections is not None:
            rejections.record(client, route=instance, status=refused.status, reason=refused.detail, now=now)
        return refused.answer(instance)
    return None


class SignedRouteGuard(Protocol):
    """What a signed route's guard carries (http_retrain.WebhookGuard, drift_on_demand.DriftHttpGuard)."""

    @property
    def secrets(self) -> tuple[str, ...]: ...
    @property
    def replay(self) -> Replays: ...
    @property
    def rejections(self) -> Refusals | None: ...
    @property
    def tolerance_s(self) -> int: ...


def admit_with(guard: SignedRouteGuard, request: WebhookRequest, *, instance: str, now: float, span: Span,
               **options: str | None) -> HttpAnswer | None:
    """`admit` with a route's guard; a refusal is marked on the route's span (failed, status, outcome rejected)
    before it is answered, as both signed routes record it."""
    refused = admit(request, instance=instance, secrets=guard.secrets, replay=guard.replay,
                    rejections=guard.rejections, tolerance_s=guard.tolerance_s, now=now, **options)
    if refused is not None:
        span.fail(f"refused ({refused.status}) before authentication")
        span.set(status=refused.status, outcome=Outcome.REJECTED)
    return refused
