"""Retrain requests go through the outbox (`shared.adapters.outbox`) and this dispatcher submits them.

- Coalescing: an upload's request waits `coalesce_s` after it arrived; a newer one within that time takes its
  place (the older is `superseded by` it), so a burst of uploads trains once, on the newest version.
- Single flight: nothing is submitted while a run is in flight; the one pending request (latest wins) is
  submitted when the run ends (the completion handler dispatches right after it finishes, the outbox timer
  otherwise).
- Retries: a pipeline endpoint that answers 429/5xx, times out or cannot be reached is tried again with
  exponential backoff and jitter (at least its `Retry-After`) until the request's deadline; then the request
  and its trigger's audit record end `failed` with the reason, and `retrain retry ID` puts it back.
- Exactly one run per request: neither pipeline service deduplicates a submission (the same body sent twice starts
  two runs), so before a request is submitted again — after no answer, a 5xx, a dead instance's stale claim, or
  any earlier failed attempt — the dispatcher looks up the run an earlier attempt may have started
  (`PipelineClient.find_run(request id)`: the v2 job named after the request, or the v1 run carrying its
  `trigger_id`). Found: that run is recorded as the submission's, nothing is posted. Not found: it is submitted.
  A lookup that fails submits nothing: a request that may have started a run stays `unconfirmed` (looked up again
  later, past its deadline too); any other is a failed attempt like a refused POST.
"""

from __future__ import annotations

import logging
import random
import time

from shared import telemetry
from shared.domain.outcomes import Outcome, RequestStatus
from shared.domain.records import AuditRecord, DatasetVersion
from shared.domain.retrain_request import RetrainRequest
from shared.ports import AuditLog, PipelineError, RetrainOutbox, RunLookupUnavailable
from shared.services.retrain import DispatchPolicy, RetrainDispatch, find_started_run, record_run, request_retrain

__all__ = ["DispatchPolicy", "RetrainDispatch", "backoff", "dispatch", "new_request", "request_and_dispatch", "retry"]

log = logging.getLogger(__name__)

RETRYABLE = {408, 429, 500, 502, 503, 504}


def new_request(record: AuditRecord, *, dataset_version: int, reason: str, policy: DispatchPolicy,
                coalesce: bool = False, parameters: dict | None = None, uploaded_at: float | None = None,
                now: float | None = None, summary: str = "") -> RetrainRequest:
    now = time.time() if now is None else now
    return RetrainRequest(id=record.id, trigger=record.trigger, reason=reason, dataset_version=dataset_version,
                          requested_at=now, not_before=now + (policy.coalesce_s if coalesce else 0.0),
                          deadline=now + policy.deadline_s, parameters=dict(parameters or {}),
                          uploaded_at=uploaded_at, traceparent=telemetry.inject().get("traceparent", ""),
                          summary=summary)


def enqueue(request: RetrainRequest, *, outbox: RetrainOutbox, audit: AuditLog) -> None:
    """Store the request; the one that ends superseded (latest wins: normally the one it displaced, or itself when
    it arrived out of order) and its trigger's audit record say so."""
    superseded = outbox.enqueue(request)
    if superseded is not None:
        winner = request if superseded.id != request.id else outbox.get(superseded.superseded_by)
        _supersede_audit(superseded, winner, audit)


def _supersede_audit(old: RetrainRequest, new: RetrainRequest, audit: AuditLog) -> None:
    record = audit.get(old.id)
    if record is not None:
        audit.finish(record, Outcome.SUPERSEDED, f"superseded by v{new.dataset_version} (request {new.id}): one "
                                           "retrain runs on the newest data")


def _note(audit: AuditLog, record_id: str, detail: str) -> None:
    record = audit.get(record_id)
    if record is not None and record.outcome == Outcome.QUEUED:
        record.detail = detail
        audit.save(record)


def backoff(attempts: int, retry_after: float | None, policy: DispatchPolicy, rand=random.random) -> float:
    """Exponential with full jitter on the upper half, never below the server's Retry-After."""
    ceiling = min(policy.max_backoff_s, policy.backoff_s * 2 ** max(0, attempts - 1))
    delay = ceiling / 2 + rand() * ceiling / 2
    return max(delay, retry_after or 0.0)


def dispatch(retrain: RetrainDispatch, now: float | None = None) -> str:
    """Submit the pending request if it is due and nothing is in flight; returns what happened (for logs)."""
    now = time.time() if now is None else now
    outbox, audit = retrain.outbox, retrain.audit
    for stale in outbox.stale(now, retrain.policy.lease_s):
        released = outbox.release(stale.id, error="the instance submitting it stopped; looking up its run first",
                                  next_attempt_at=now, maybe_started=True)
        if released is not None:
            _note(audit, released.id, f"the instance submitting dataset v{released.dataset_version} stopped; "
                                      "looking up the run it may have started before submitting again")
    if outbox.list(RequestStatus.SUBMITTING):
        return "busy: another instance is submitting"
    unconfirmed = {r.id for r in outbox.list(RequestStatus.UNCONFIRMED)}
    # an unconfirmed attempt is confirmed first
    if retrain.runs.in_flight() and not unconfirmed:
        return "busy: a run is in flight"
    request = outbox.claim(now)
    if request is None:
        return "nothing due"
    return _submit(request, retrain, now, unconfirmed=request.id in unconfirmed)


def _submit(request: RetrainRequest, retrain: RetrainDispatch, now: float, *, unconfirmed: bool = False) -> str:
    """Every resubmission (`attempts` > 1) looks its run up first, not only the ones known `unconfirmed`: the
    claim does not say which status it came from, and another instance can release a request as unconfirmed between
    this one's listing and its claim. A lookup that fails for a request known unconfirmed keeps it unconfirmed;
    for one that was pending it is a failed attempt like any other (nothing says a run was started)."""
    outbox, audit = retrain.outbox, retrain.audit
    record = audit.get(request.id) or AuditRecord(id=request.id, trigger=request.trigger, function="outbox",
                                                  started_at=request.requested_at)
    dataset = retrain.datasets.get(request.dataset_version)
    if dataset is None:
        outbox.finish(request.id, RequestStatus.FAILED, error=f"dataset v{request.dataset_version} does not exist")
        audit.finish(record, Outcome.FAILED, f"dataset v{request.dataset_version} does not exist")
        return "failed: no dataset"
    with telemetry.span("dispatch", parent={"traceparent": request.traceparent} if request.traceparent else None,
                        trigger_id=request.id, attempt=request.attempts,
                        dataset_version=request.dataset_version) as span:
        found, traceparent = None, ""
        if request.attempts > 1:  # a resubmission: an earlier attempt may have started the run
            try:
                found, traceparent = find_started_run(record, retrain)
            except RunLookupUnavailable as exc:
                # a v1 pipeline endpoint URL: no lookup exists. A request that only waited (429, refused connection)
                # is submitted as before; one that may have started a run is submitted too, rather than held forever,
                # and its record says a second run is possible (docs/reliability.md)
                if unconfirmed:
                    record.data["unconfirmed_resubmission"] = str(exc)
            except Exception as exc:
                span.fail(str(exc))
                if unconfirmed:
                    return _lookup_failed(request, record, exc, retrain, now)
                return _failed_attempt(request, record, exc, retrain, now)
        try:
            if found is not None:
                run = record_run(found, dataset, reason=request.reason, record=record, retrain=retrain,
                                 uploaded_at=request.uploaded_at, traceparent=traceparent)
            else:
                run = request_retrain(dataset, reason=request.reason, record=record, retrain=retrain,
                                      parameters=request.parameters or None, uploaded_at=request.uploaded_at)
        except Exception as exc:
            span.fail(str(exc))
            return _failed_attempt(request, record, exc, retrain, now)
        outbox.finish(request.id, RequestStatus.SUBMITTED, run_id=run.run_id)
        record.data["attempts"] = request.attempts
        tries = f" after {request.attempts} attempts" if request.attempts > 1 else ""
        how = (f"; run {run.run_id} started by an earlier attempt was found, not submitted again"
               if found is not None else "")
        audit.finish(record, Outcome.SUBMITTED, f"{request.summary or f'dataset v{dataset.version}'} submitted "
                                          f"({request.reason}){tries}{how}")
        return f"submitted {run.run_id}" + (" (found: started by an earlier attempt)" if found is not None else "")


def _lookup_failed(request: RetrainRequest, record: AuditRecord, exc: Exception, retrain: RetrainDispatch,
                   now: float) -> str:
    """The lookup before a resubmission failed: whether a run exists is unknown, so the request is not submitted
    and stays `unconfirmed` (never superseded, never failed at its deadline: failing it could leave a run nobody
    records) until a later lookup answers."""
    reason = f"{type(exc).__name__}: {exc}"
    delay = backoff(request.attempts, getattr(exc, "retry_after", None), retrain.policy)
    retrain.outbox.release(request.id, error=f"looking up its run failed ({reason})", next_attempt_at=now + delay,
                           maybe_started=True)
    record.outcome = Outcome.QUEUED
    record.detail = (f"attempt {request.attempts}: looking up the run an earlier attempt may have started failed "
                     f"({reason}); not submitted again until a lookup answers; next lookup in {delay:.0f} s")
    retrain.audit.save(record)
    log.warning("retrain request %s: %s", request.id, record.detail)
    return f"lookup failed; retry in {delay:.0f} s"


def _failed_attempt(request: RetrainRequest, record: AuditRecord, exc: Exception, retrain: RetrainDispatch,
                    now: float) -> str:
    outbox, audit, policy = retrain.outbox, retrain.audit, retrain.policy
    status = getattr(exc, "status", None)
    reason = f"{type(exc).__name__}: {exc}"
    retryable = status is None or status in RETRYABLE
    maybe_started = getattr(exc, "maybe_started", not isinstance(exc, PipelineError))
    if retryable and (now < request.deadline or maybe_started):  # a run that may exist is always confirmed
        delay = backoff(request.attempts, getattr(exc, "retry_after", None), policy)
        released = outbox.release(request.id, error=reason, next_attempt_at=now + delay, maybe_started=maybe_started)
        if released is not None and released.status == RequestStatus.SUPERSEDED:
            newer = outbox.get(released.superseded_by)
            audit.finish(record, Outcome.SUPERSEDED, f"submit attempt {request.attempts} failed ({reason}); "
                                                     f"superseded by v{newer.dataset_version if newer else '?'} "
                                                     f"(request {released.superseded_by}) meanwhile")
            return "superseded"
        record.outcome = Outcome.QUEUED
        record.detail = f"submit attempt {request.attempts} failed ({reason}); retrying in {delay:.0f} s" + \
            (", looking up the run it may have started first" if maybe_started else "")
        audit.save(record)
        log.warning("retrain request %s: %s", request.id, record.detail)
        return f"retry in {delay:.0f} s"
    why = "not retryable" if not retryable else f"deadline passed after {request.attempts} attempts"
    outbox.finish(request.id, RequestStatus.FAILED, error=reason)
    audit.finish(record, Outcome.FAILED, f"pipeline submit failed ({why}): {reason}; `retrain retry {request.id}` "
                                   "submits it again")
    return "failed"


def retry(request_id: str, *, outbox: RetrainOutbox, audit: AuditLog, policy: DispatchPolicy,
          now: float | None = None) -> RetrainRequest:
    """A failed request back in the outbox (by hand), with a new deadline."""
    now = time.time() if now is None else now
    request = outbox.get(request_id)
    if request is None:
        raise LookupError(f"no retrain request {request_id!r} (see `retrain status`)")
    if request.status != RequestStatus.FAILED:
        raise ValueError(f"request {request_id} is {request.status}, not failed: nothing to retry")
    released = outbox.release(request_id, error=f"retried by hand (was: {request.last_error})", next_attempt_at=now,
                              expected=RequestStatus.FAILED, deadline=now + policy.deadline_s)
    if released is None:
        raise ValueError(f"request {request_id} changed meanwhile; look again")
    record = audit.get(request_id)
    if record is not None:
        record.outcome, record.finished_at = Outcome.QUEUED, None
        record.detail = "retried by hand; queued"
        audit.save(record)
    return released


def request_and_dispatch(record: AuditRecord, dataset: DatasetVersion, retrain: RetrainDispatch, *, reason: str,
                         coalesce: bool = False, parameters: dict | None = None, uploaded_at: float | None = None,
                         detail: str = "") -> tuple[RetrainRequest, AuditRecord]:
    """The one path every trigger takes to ask for a retrain: into the outbox, then submitted now if it is due
    and nothing is in flight. Returns the request as stored afterwards (`submitted`, `pending`, `failed`) and the
    trigger's audit record as the dispatcher left it (it writes the outcome)."""
    policy, audit = retrain.policy, retrain.audit
    request = new_request(record, dataset_version=dataset.version, reason=reason, policy=policy, coalesce=coalesce,
                          parameters=parameters, uploaded_at=uploaded_at, summary=detail)
    record.dataset_version = dataset.version
    record.stage("queued")
    record.outcome = Outcome.QUEUED
    record.detail = (f"{detail or f'dataset v{dataset.version}'} queued ({reason})"
                     + (f"; waits {policy.coalesce_s:.0f} s for newer uploads" if coalesce and policy.coalesce_s
                        else "") + "; submitted when nothing is in flight")
    audit.save(record)
    enqueue(request, outbox=retrain.outbox, audit=audit)
    # No audit write after this point: the dispatcher (this one or another instance's) and a newer request
    # superseding this one write the outcome; a read-modify-write here could undo theirs.
    dispatch(retrain)
    return retrain.outbox.get(request.id), audit.get(record.id) or record
