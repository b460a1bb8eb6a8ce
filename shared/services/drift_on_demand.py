"""`POST /api/drift-check` and the drift timer, one check at a time.

The route is signed like `POST /api/retrain` (shared.services.http_guard: same signature, timestamp window, replay
guard and refusal throttle) and has its own per-caller rate limit (DRIFT_HTTP_RATE_LIMIT per
DRIFT_HTTP_RATE_WINDOW_S): a check profiles up to DRIFT_INLINE_MAX_BYTES inline and can submit a retrain, so the
function key alone must not start one. The body is empty (or `{}`): the signature is over TIMESTAMP + "." + those
exact bytes. The check takes no parameters.

Single flight across instances: before a check runs, it claims a lease row in the webhook table
(shared.adapters.webhook_state.SingleFlight: create-if-not-exists, or take over an expired lease on its ETag). A
second request while a check runs is answered 409 with the running check's `Location` (`/api/runs/{audit id}`,
which shows audit records too); the timer skips its run with an audit record saying which check is running.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared import telemetry
from shared.domain.outcomes import Outcome
from shared.domain.records import AuditRecord, new_id
from shared.ports import AuditLog, Lease, LeaseClaim, RateLimit, Refusals, Replays
from shared.services import http_guard
from shared.services.http_guard import HttpAnswer, Refused, WebhookRequest

INSTANCE = "/api/drift-check"


@dataclass(frozen=True)
class DriftHttpGuard:
    """What admits a request to the route: the webhook secret(s) and replay guard, the refusal log, its own rate."""

    secrets: tuple[str, ...]
    replay: Replays
    rate: RateLimit | None  # DRIFT_HTTP_RATE_LIMIT; None: no limit
    rejections: Refusals | None  # None: refusals are not counted (tests of the rest)
    tolerance_s: int = 300


@dataclass(frozen=True)
class DriftOnDemand:
    """What running a drift check under the lease needs: the route's guard (None: unguarded, for tests of the
    rest), the lease that keeps one check at a time across instances (None: unguarded), and the audit trail."""

    guard: DriftHttpGuard | None
    flight: Lease | None
    audit: AuditLog


Check = Callable[[str], AuditRecord]  # runs one drift check under the given audit id


def location(audit_id: str) -> str:
    return f"/api/runs/{audit_id}"


def result_answer(record: AuditRecord) -> HttpAnswer:
    """The check's verdict (200), or 202 when a large window was handed to a profiling job."""
    body = {"audit_id": record.id, "outcome": record.outcome, "detail": record.detail, "run_id": record.run_id,
            "drift": record.data.get("drift"), "report": record.data.get("report"),
            "job": record.data.get("offload", {}).get("job")}
    if record.outcome == Outcome.PROFILING:  # a large window: the verdict follows its job, in the record shown here
        return HttpAnswer(202, json.loads(json.dumps(body, default=str)), {"Location": location(record.id)})
    return HttpAnswer(200, json.loads(json.dumps(body, default=str)))


def single_flight(flight: Lease | None, run_check: Check, *, record_id: str,
                  now: float) -> tuple[AuditRecord, None] | tuple[None, LeaseClaim]:
    """Run `run_check(record_id)` holding the lease; returns (record, None), or (None, claim) naming the check that
    holds it. `flight=None` runs unguarded."""
    if flight is None:
        return run_check(record_id), None
    claim = flight.acquire(record_id, now, location=location(record_id))
    if not claim.acquired:
        return None, claim
    try:
        return run_check(record_id), None
    finally:
        flight.release(record_id)


def drift_check_http(request: WebhookRequest, on_demand: DriftOnDemand, run_check: Check,
                     now: float | None = None) -> tuple[HttpAnswer, AuditRecord | None]:
    """Admit, then run one check (see the module docstring). The record is None for a refusal before
    authentication (counted in the caller's aggregate, not audited); every authenticated request has one."""
    now = time.time() if now is None else now
    guard = on_demand.guard
    with telemetry.span("drift_check_http", kind="server", size=len(request.body)) as span:
        if guard is not None:
            refused = http_guard.admit_with(guard, request, instance=INSTANCE, now=now, span=span, media=None)
            if refused is not None:
                return refused, None
        record_id = new_id("http-")
        span.set(trigger_id=record_id)
        try:
            if guard is None:
                http_guard.check_shape(request, instance=INSTANCE, media=None)
            else:
                http_guard.check_rate(guard.rate, request.client, now)
            _no_parameters(request.body)
            record, claim = single_flight(on_demand.flight, run_check, record_id=record_id, now=now)
            if record is None:
                holder = claim.holder or "unknown"
                raise Refused(409, f"a drift check is already running (check {holder}, since "
                                   f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(claim.since))}); follow "
                                   "it at its Location, or retry when it has finished",
                              {"Location": claim.location or location(holder), "Retry-After": "30"})
        except Refused as exc:
            record = AuditRecord(id=record_id, trigger="http", function="drift_http", started_at=time.time(),
                                 source=f"{request.method} {INSTANCE}")
            record.data.update(client=request.client, status=exc.status)
            record.finish(Outcome.REJECTED, f"rejected ({exc.status}): {exc.detail}")
            on_demand.audit.save(record)
            span.fail(record.detail)
            span.set(status=exc.status, outcome=Outcome.REJECTED)
            return exc.answer(INSTANCE), record
        answer = result_answer(record)
        span.set(status=answer.status, outcome=record.outcome)
        return answer, record


def _no_parameters(body: bytes) -> None:
    """The check takes no parameters: an empty body or `{}`."""
    if not body.strip():
        return
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if doc != {}:
        raise Refused(400, "POST /api/drift-check takes no parameters: send an empty body (or {}), signed")


def timer_check(on_demand: DriftOnDemand, run_check: Check, past_due: bool = False,
                now: float | None = None) -> AuditRecord:
    """The scheduled check under the same lease; when another check holds it, an audit record says so."""
    now = time.time() if now is None else now
    record_id = new_id("timer-")
    record, claim = single_flight(on_demand.flight, run_check, record_id=record_id, now=now)
    if record is not None:
        return record
    skipped = AuditRecord(id=record_id, trigger="timer", function="drift_timer", started_at=time.time(),
                          source="schedule" + (" (past due)" if past_due else ""))
    skipped.finish(Outcome.SKIPPED, f"skipped: a drift check is already running (check {claim.holder or 'unknown'})")
    on_demand.audit.save(skipped)
    return skipped
