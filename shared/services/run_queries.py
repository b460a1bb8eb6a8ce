"""Read side of the API: the runs we submitted, with what happened to them, and the registered models."""

from __future__ import annotations

import math
import re
from dataclasses import asdict

from shared.domain.outcomes import Outcome, RequestStatus, RunStatus
from shared.domain.records import AuditRecord
from shared.domain.retrain_request import RetrainRequest
from shared.ports import AuditLog, ModelLog, RetrainOutbox, RunLog
from shared.services.http_guard import HttpAnswer, problem

LIMIT_DEFAULT = 50
LIMIT_MIN, LIMIT_MAX = 1, 500
_DIGITS = re.compile(r"[0-9]{1,6}")


# A request in the outbox as a run status (anything else: its own status, title-cased).
REQUEST_STATUS = {RequestStatus.PENDING: RunStatus.QUEUED, RequestStatus.SUBMITTING: RunStatus.QUEUED,
                  RequestStatus.SUPERSEDED: RunStatus.SUPERSEDED, RequestStatus.FAILED: RunStatus.FAILED}


def request_view(request: RetrainRequest, experiment: str) -> dict:
    """A retrain request not (yet) submitted, in the run record's shape: `run_id` is the request's id until the
    pipeline run exists; `status` Queued, Superseded or Failed; `detail` says why."""
    if request.status == RequestStatus.SUPERSEDED:
        detail = f"superseded by request {request.superseded_by}"
    elif request.status == RequestStatus.FAILED:
        detail = f"submit failed: {request.last_error}"
    else:
        detail = (f"waiting (attempt {request.attempts + 1}): {request.last_error}" if request.last_error
                  else "waiting for the coalescing window or the run in flight")
    return {"run_id": request.id, "trigger_id": request.id, "trigger": request.trigger, "reason": request.reason,
            "dataset_version": request.dataset_version, "experiment": experiment,
            "submitted_at": request.requested_at, "uploaded_at": request.uploaded_at,
            "status": REQUEST_STATUS.get(request.status, request.status.title()), "finished_at": request.finished_at,
            "model_version": None, "detail": detail, "claimed_at": request.claimed_at, "traceparent": "",
            "request_id": request.id}


# An audit record still open (Outcome.is_open) as a run status; an ended one shows its outcome.
AUDIT_STATUS = {o: RunStatus.RUNNING for o in Outcome if o.is_open}


def audit_view(record: AuditRecord, experiment: str = "") -> dict:
    """A trigger's audit record (e.g. a drift check) in the run record's shape, so the `Location` of a running
    drift check (`/api/runs/{audit id}`) answers: `status` Running while it runs, then its outcome; `run_id` is
    the audit id, `submitted_run` the pipeline run it submitted (if any)."""
    return {"run_id": record.id, "trigger_id": record.id, "trigger": record.trigger, "reason": record.function,
            "dataset_version": record.dataset_version, "experiment": experiment, "submitted_at": record.started_at,
            "uploaded_at": None, "status": AUDIT_STATUS.get(record.outcome, record.outcome),
            "finished_at": record.finished_at, "model_version": record.model_version, "detail": record.detail,
            "claimed_at": None, "traceparent": "", "audit_id": record.id, "outcome": record.outcome,
            "submitted_run": record.run_id}


def get_run(run_id: str, *, runs: RunLog, outbox: RetrainOutbox | None = None, experiment: str = "",
            audit: AuditLog | None = None) -> HttpAnswer:
    """A submitted run, or a request still in (or ended in) the outbox: `Location` answers of queued requests
    point at the request's id, which then names its run once submitted. With `audit`, an audit id (a drift
    check's `Location`) answers its record in the run's shape (audit_view)."""
    run = runs.get(run_id)
    if run is None and outbox is not None:
        request = outbox.get(run_id)
        if request is not None:
            if request.status == RequestStatus.SUBMITTED and request.run_id:
                run = runs.get(request.run_id)
            else:
                return HttpAnswer(200, request_view(request, experiment))
    if run is None and audit is not None:
        record = audit.get(run_id)
        if record is not None:
            return HttpAnswer(200, audit_view(record, experiment))
    if run is None:
        return problem(404, f"no run {run_id!r} was submitted by this service")
    return HttpAnswer(200, asdict(run))


def parse_limit(text: str | None) -> int | HttpAnswer:
    """The `limit` query parameter: absent -> 50; an integer from 1 to 500 -> itself; anything else (`abc`, `0`,
    `501`, `1.5`, empty) -> a 400 problem naming the parameter and the range."""
    if text is None:
        return LIMIT_DEFAULT
    if _DIGITS.fullmatch(text) and LIMIT_MIN <= int(text) <= LIMIT_MAX:
        return int(text)
    shown = text if len(text) <= 20 else text[:20] + "..."
    reason = f"must be an integer from {LIMIT_MIN} to {LIMIT_MAX}"
    return problem(400, f"query parameter 'limit' {reason}, got {shown!r}",
                   invalid_params=[{"name": "limit", "reason": reason}])


def list_runs(*, runs: RunLog, limit: int | str | None = LIMIT_DEFAULT, status: str | None = None) -> HttpAnswer:
    """Newest first, at most `limit` (validated: see parse_limit), only `status` when given (case-insensitive)."""
    if not (isinstance(limit, int) and LIMIT_MIN <= limit <= LIMIT_MAX):
        limit = parse_limit(None if limit is None else str(limit))
        if isinstance(limit, HttpAnswer):
            return limit
    # reads about `limit` rows
    return HttpAnswer(200, {"runs": [asdict(r) for r in runs.newest(limit, status or None)]})


def _finite(value):
    """JSON has no NaN or Infinity: a metric that is not a finite number is reported as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def list_models(*, models: ModelLog) -> HttpAnswer:
    """Every registered version, oldest first, each with whether it is live, and the live version (null: none).
    `model_dir` (where the model is stored) is left out: a storage location, not part of the API."""
    live = models.live()
    live_version = live.version if live is not None else None
    items = []
    for model in models.list():
        entry = {k: v for k, v in asdict(model).items() if k != "model_dir"}
        entry["metrics"] = _finite(entry.get("metrics") or {})
        entry["live"] = model.version == live_version
        items.append(entry)
    return HttpAnswer(200, {"models": items, "live": live_version})
