"""GET /api/dashboard/data: one snapshot of the loop for the dashboard page — what fired, what it started, what
was decided and why, how each model scored, which columns drifted, what waits in the outbox.

Read from the same stores as GET /api/runs and /api/models (and the audit trail they point at), so the page shows
what happened, not a copy. Reads are bounded: the newest AUDIT_WINDOW audit records, the newest RUNS_WINDOW runs,
every model version, the outbox's open requests; the page's server time stays flat as the history grows
(bench/dashboard.py measures it with 1,000 audit records).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import asdict, dataclass
from enum import StrEnum

from shared.domain.outcomes import Outcome, RequestStatus
from shared.domain.promotion import finite_number
from shared.domain.records import AuditRecord, ModelVersion
from shared.ports import AuditLog, ModelLog, ReportReader, RetrainOutbox, RunLog
from shared.services.http_guard import HttpAnswer, problem

AUDIT_WINDOW = 500  # audit records read per snapshot (timeline, decisions, drift series)
TIMELINE_ROWS = 150  # of which the timeline shows the newest
RUNS_WINDOW = 100
REPLAY_BLOB = "replay/latest.json"  # in the reports container: bench/replay.py's figures, when a replay ran
_REPLAY_MAX_BYTES = 1024 * 1024


class Kind(StrEnum):
    """What a timeline entry is, for the page's filters and icons."""

    UPLOAD = "upload"
    DRIFT = "drift"
    WEBHOOK = "webhook"
    REQUEST = "request"  # the outbox's submission of a retrain request
    RECONCILE = "reconcile"
    COMPLETION = "completion"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    OTHER = "other"


class OutboxState(StrEnum):
    """A retrain request not yet submitted, as the page shows it."""

    QUEUED = "queued"  # pending, never tried: waiting out its coalescing window
    IN_FLIGHT = "in_flight"  # being submitted, or a submit that may have started a run is being confirmed
    RETRYING = "retrying"  # pending again after a failed submit: next attempt at `next_attempt_at`


class ModelState(StrEnum):
    """A model version as the page shows it."""

    LIVE = "live"
    ROLLED_BACK = "rolled_back"  # it served, then a rollback (automatic or by hand) replaced it
    KEPT_OUT = "kept_out"  # the gate kept the champion: never deployed
    RETIRED = "retired"  # served once, replaced by a newer deploy
    REGISTERED = "registered"  # registered; no decision in the window read


@dataclass(frozen=True)
class DashboardSources:
    """What the snapshot reads: the API's stores, and the reports container (drift reports, replay figures)."""

    audit: AuditLog
    runs: RunLog
    models: ModelLog
    outbox: RetrainOutbox
    reports: ReportReader | None = None


def kind_of(record: AuditRecord) -> Kind:
    if record.function == "promote":
        return Kind.PROMOTE
    if record.function == "rollback":
        return Kind.ROLLBACK
    if "drift" in record.function:
        return Kind.DRIFT
    if record.trigger == "blob":
        return Kind.UPLOAD
    if record.function == "outbox":
        return Kind.REQUEST
    if record.trigger == "eventgrid" or "decision" in record.data:
        return Kind.COMPLETION
    if record.trigger == "timer" and "reconcile" in record.function:
        return Kind.RECONCILE
    if record.trigger == "http":
        return Kind.WEBHOOK
    return Kind.OTHER


def _figures(metrics: dict | None) -> dict[str, float | None]:
    metrics = metrics if isinstance(metrics, dict) else {}
    return {k: finite_number(metrics.get(k)) for k in ("auc", "accuracy", "rows")}


def _reason(record: AuditRecord) -> str:
    decision = record.data.get("decision")
    if isinstance(decision, dict) and decision.get("reason"):
        return str(decision["reason"])
    return record.detail


def timeline_entry(record: AuditRecord) -> dict:
    return {"id": record.id, "kind": kind_of(record), "trigger": record.trigger, "function": record.function,
            "started_at": record.started_at, "finished_at": record.finished_at, "outcome": record.outcome,
            "reason": _reason(record)[:500], "source": record.source[:300],
            "dataset_version": record.dataset_version, "run_id": record.run_id,
            "model_version": record.model_version, "has_report": bool(record.data.get("report"))}


def _rolled_back_version(record: AuditRecord) -> int | None:
    """The version a rollback took off the endpoint: by hand, the one it replaced; after a failed post-switch
    check, the new model itself."""
    if record.outcome != Outcome.ROLLED_BACK:
        return None
    replaced = record.data.get("replaced") if record.function == "rollback" else record.model_version
    return replaced if isinstance(replaced, int) else None


def _comparison(record: AuditRecord) -> dict | None:
    decision = record.data.get("decision")
    if not isinstance(decision, dict):
        return None
    return {"audit_id": record.id, "at": record.finished_at or record.started_at, "outcome": record.outcome,
            "decision": str(decision.get("outcome") or ""), "reason": str(decision.get("reason") or "")[:500],
            "challenger": _figures(decision.get("challenger")), "champion": _figures(decision.get("champion")),
            "run_id": record.run_id}


def models_view(models: list[ModelVersion], live: ModelVersion | None, records: list[AuditRecord]) -> list[dict]:
    """Every version, oldest first: held-out figures, its champion/challenger comparison, and its state.
    `records` oldest first: the last word on a version wins."""
    comparisons: dict[int, dict] = {}
    rolled_back: set[int] = set()
    deployed: set[int] = set()
    for record in records:
        if record.model_version is not None and (found := _comparison(record)) is not None:
            comparisons[record.model_version] = found
        if (gone := _rolled_back_version(record)) is not None:
            rolled_back.add(gone)
        if record.outcome in (Outcome.DEPLOYED, Outcome.PROMOTED) and record.model_version is not None:
            deployed.add(record.model_version)
            rolled_back.discard(record.model_version)
    items = []
    for model in models:
        comparison = comparisons.get(model.version)
        if live is not None and model.version == live.version:
            state = ModelState.LIVE
        elif model.version in rolled_back:
            state = ModelState.ROLLED_BACK
        elif model.version in deployed:
            state = ModelState.RETIRED
        elif comparison is not None and comparison["outcome"] == Outcome.KEPT_CHAMPION:
            state = ModelState.KEPT_OUT
        else:
            state = ModelState.REGISTERED
        items.append({"version": model.version, "run_id": model.run_id, "dataset_version": model.dataset_version,
                      "registered_at": model.registered_at, "state": state, "held_out": _figures(model.metrics),
                      "comparison": comparison})
    return items


def drift_view(records: list[AuditRecord]) -> dict:
    """Each drift check with a verdict (`records` oldest first): its per-column scores and whether it has a
    report."""
    checks = []
    columns: set[str] = set()
    for record in records:
        drift = record.data.get("drift")
        if kind_of(record) != Kind.DRIFT or not isinstance(drift, dict):
            continue
        scores = {str(c): v for c, s in (drift.get("scores") or {}).items() if (v := finite_number(s)) is not None}
        columns.update(scores)
        checks.append({"audit_id": record.id, "at": record.started_at, "outcome": record.outcome,
                       "drifted": drift.get("drifted"), "drift_share": finite_number(drift.get("drift_share")),
                       "drifted_columns": [str(c) for c in drift.get("drifted_columns") or []], "scores": scores,
                       "has_report": bool(record.data.get("report"))})
    return {"columns": sorted(columns), "checks": checks}


def outbox_view(outbox: RetrainOutbox, now: float) -> list[dict]:
    """The requests not yet submitted: queued (waiting for their window), in flight (being submitted), retrying
    (a submit failed; next attempt at `next_attempt_at`)."""
    items = []
    for status in (RequestStatus.PENDING, RequestStatus.SUBMITTING, RequestStatus.UNCONFIRMED):
        for request in outbox.list(status):
            pending = status == RequestStatus.PENDING
            if pending:
                state = OutboxState.RETRYING if request.attempts else OutboxState.QUEUED
            else:
                state = OutboxState.IN_FLIGHT
            next_at = max(request.not_before, request.next_attempt_at) if pending else None
            items.append({"id": request.id, "state": state, "trigger": request.trigger, "reason": request.reason,
                          "dataset_version": request.dataset_version, "requested_at": request.requested_at,
                          "attempts": request.attempts, "next_attempt_at": next_at,
                          "last_error": request.last_error[:300], "deadline": request.deadline})
    return sorted(items, key=lambda r: r["requested_at"])


def replay_view(reports: ReportReader | None) -> dict | None:
    """bench/replay.py's last figures ({"summary": ..., "periods": [...]}), when a replay stored them."""
    if reports is None:
        return None
    raw = reports.read(REPLAY_BLOB, max_bytes=_REPLAY_MAX_BYTES)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    periods = doc.get("periods") if isinstance(doc, dict) else None
    if not isinstance(periods, list):
        return None
    points = [{"period": p.get("period"), "rows": p.get("rows"), "live_version": p.get("live_version"),
               **{k: finite_number(p.get(k)) for k in ("ours_auc", "static_auc", "lightgbm_auc")}}
              for p in periods if isinstance(p, dict)]
    summary = doc.get("summary") if isinstance(doc.get("summary"), dict) else {}
    return {"periods": points, "summary": {k: v for k, v in summary.items()  # text and finite numbers only
                                           if isinstance(v, str) or finite_number(v) is not None}}


def snapshot(sources: DashboardSources, *, now: float | None = None, audit_window: int = AUDIT_WINDOW,
             timeline_rows: int = TIMELINE_ROWS) -> dict:
    """Everything the page shows, as JSON-ready data."""
    now = time.time() if now is None else now
    records = list(itertools.islice(sources.audit.newest(page=audit_window), audit_window))  # newest first
    oldest_first = sorted(records, key=lambda r: r.started_at)
    live = sources.models.live()
    runs = sources.runs.newest(RUNS_WINDOW)
    return {
        "generated_at": now,
        "live_version": live.version if live is not None else None,
        "timeline": [timeline_entry(r) for r in records[:timeline_rows]],
        "audit_window": {"read": len(records), "limit": audit_window},
        "runs": [asdict(r) for r in runs],  # as GET /api/runs answers them (schema Run)
        "models": models_view(sources.models.list(), live, oldest_first),
        "drift": drift_view(oldest_first),
        "outbox": outbox_view(sources.outbox, now),
        "replay": replay_view(sources.reports),
    }


_REPORT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
REPORT_MAX_BYTES = 8 * 1024 * 1024
# A stored report is our own HTML (drift_report.render_html: inline styles, no script); served sandboxed all the same.
REPORT_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox",
                  "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def drift_report(record_id: str, *, audit: AuditLog, reports: ReportReader, container: str) -> HttpAnswer:
    """GET /api/drift-reports/{id}: the HTML report of drift check `id` (its audit id). The blob's name comes from
    the check's own audit record, never from the URL."""
    if not _REPORT_ID.fullmatch(record_id or ""):
        return problem(404, "no drift check with that id")
    record = audit.get(record_id)
    where = str((record.data.get("report") if record is not None else "") or "")
    if not where:
        return problem(404, f"drift check {record_id!r} has no stored report" if record is not None
                       else f"no drift check {record_id!r}")
    stored_in, _, name = where.partition("/")
    if stored_in != container or not name:
        return problem(404, f"drift check {record_id!r}'s report is not in the reports container")
    html = reports.read(name, max_bytes=REPORT_MAX_BYTES)
    if html is None:
        return problem(404, f"drift check {record_id!r}'s report is gone (or over {REPORT_MAX_BYTES} bytes)")
    return HttpAnswer(200, html, dict(REPORT_HEADERS), mimetype="text/html")
