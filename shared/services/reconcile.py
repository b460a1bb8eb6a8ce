"""The reconcile timer: finish runs whose completion event never came.

Event Grid can lose or never send an event (a failed pipeline run sends no RunCompleted), and a handler can die
half-way. Each pass asks the pipeline service about every run still Submitted (older than `min_age_s`, so the
event usually wins), finishes the ended ones through the same code as the event handler, fails runs that
exceeded `run_timeout_s`, and hands runs stuck in Handling for `stale_handling_s` back for another try.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from shared.domain.outcomes import Outcome, PipelineStatus, RunStatus
from shared.domain.records import AuditRecord, new_id
from shared.domain.run_events import RunEvent
from shared.ports import AuditLog, RetrainOutbox
from shared.services.on_run_completed import RunCompletion, finish_run, run_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileLimits:
    min_age_s: float = 120.0  # RECONCILE_MIN_AGE_S: leave younger runs to their event
    run_timeout_s: float = 6 * 3600.0  # RUN_TIMEOUT_S: a run not ended by then is failed
    stale_handling_s: float = 900.0  # a completion that has not finished by then died


def reconcile_runs(completion: RunCompletion, limits: ReconcileLimits, *, past_due: bool = False,
                   now: float | None = None, function: str = "reconcile_timer") -> AuditRecord:
    now = time.time() if now is None else now
    runs = completion.runs
    record = AuditRecord(id=new_id("tmr-"), trigger="timer", function=function, started_at=time.time(),
                         source="reconcile" + (" (past due)" if past_due else ""))
    counts = {"checked": 0, "finished": 0, "timed_out": 0, "released": 0, "still_running": 0, "errors": 0}
    finished: list[dict] = []
    for run in runs.in_flight():
        if run.status == RunStatus.HANDLING:
            if now - (run.claimed_at or run.submitted_at) >= limits.stale_handling_s and runs.release(run.run_id):
                counts["released"] += 1
                run = runs.get(run.run_id)
            else:
                continue
        if now - run.submitted_at < limits.min_age_s:
            continue
        counts["checked"] += 1
        try:
            status = completion.pipeline.get_run(run.run_id)
        except Exception as exc:  # one unreachable run must not stop the pass
            counts["errors"] += 1
            log.warning("reconcile: status of run %s unavailable: %s", run.run_id, exc)
            continue
        if status.finished:
            event = RunEvent(event_id=f"reconcile-{run.run_id}", event_type="reconcile", run_id=run.run_id,
                             experiment=run.experiment, status=status.status,
                             properties={"error": run_error(status.raw)}
                             if status.status != PipelineStatus.COMPLETED else {})
        elif now - run.submitted_at >= limits.run_timeout_s:
            counts["timed_out"] += 1
            event = RunEvent(event_id=f"reconcile-{run.run_id}", event_type="reconcile", run_id=run.run_id,
                             experiment=run.experiment, status=PipelineStatus.FAILED.value,
                             properties={"error": f"no completion within {limits.run_timeout_s:.0f} s "
                                                  f"(last status {status.status})"})
        else:
            counts["still_running"] += 1
            continue
        child = AuditRecord(id=new_id("tmr-"), trigger="timer", function=function, started_at=time.time(),
                            source=f"reconcile {run.run_id} ({status.status})")
        done = finish_run(event, child, completion)
        counts["finished"] += done.outcome not in (Outcome.DUPLICATE, Outcome.IGNORED)
        finished.append({"run_id": run.run_id, "outcome": done.outcome, "audit_id": done.id})
    record.data.update(counts=counts, runs=finished)
    record.finish(Outcome.RECONCILED, ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "nothing in flight")
    completion.deployment.audit.save(record)
    return record


def close_interrupted(*, audit: AuditLog, outbox: RetrainOutbox, now: float | None = None,
                      older_than_s: float = 900.0) -> int:
    """Audit records a killed invocation left open — `in_progress`, or `queued` with no request in the outbox (it
    died between the two writes) — ended `interrupted`, so every trigger ends in an outcome (the host retried the
    trigger itself; its retry wrote its own record)."""
    now = time.time() if now is None else now
    closed = 0
    for outcome in (Outcome.IN_PROGRESS, Outcome.QUEUED):
        for record in audit.with_outcome(outcome):
            if now - record.started_at <= older_than_s:
                continue
            if outcome == Outcome.QUEUED and outbox.get(record.id) is not None:
                continue  # its request exists: the dispatcher ends it
            if audit.claim(record.id, outcome, Outcome.INTERRUPTED):
                stored = audit.get(record.id)
                audit.finish(stored, Outcome.INTERRUPTED, f"the invocation stopped after "
                                                    f"{', '.join(stored.stages) or 'start'} (host stopped or killed); "
                                                    "the trigger was retried by the host")
                closed += 1
    return closed
