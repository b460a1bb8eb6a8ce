"""The queued rollout of a finished run (function_app/rollout_queue.py): the work `run_completed` handed over so
Event Grid got its answer in seconds (shared.services.on_run_completed.hand_over).

A Storage queue delivers at least once: a try that fails or is killed (functionTimeout) makes the message visible
again after host.json `visibilityTimeout`, and after `maxDequeueCount` tries it goes to `<queue>-poison`
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages).
So every try resumes from the steps recorded on the run's audit record (registered, evaluated, deploying,
deployed, serving), a traffic switch is never repeated, and the poison handler gives the run its final record."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.domain.outcomes import Outcome, RunStatus
from shared.domain.records import AuditRecord
from shared.domain.run_events import RunEvent
from shared.services.on_run_completed import RunCompletion, complete_claimed, set_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolloutOrder:
    """A queue message: the claimed run, the audit record its steps are recorded on, and the event's status."""

    run_id: str
    audit_id: str
    status: str = "Completed"
    via: str = "rollout_queue"

    @classmethod
    def parse(cls, message: dict) -> RolloutOrder:
        try:
            return cls(run_id=str(message["run_id"]), audit_id=str(message["audit_id"]),
                       status=str(message.get("status") or "Completed"), via=str(message.get("via") or "rollout"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a rollout message: {exc}") from None


def run_rollout(order: RolloutOrder, completion: RunCompletion, *, try_number: int = 1) -> AuditRecord | None:
    """One try of the rollout; raises when a step fails, so the queue tries again (resuming after the last step
    recorded). A message whose record is already closed (a redelivery after success) changes nothing."""
    runs, audit = completion.runs, completion.deployment.audit
    record, run = audit.get(order.audit_id), runs.get(order.run_id)
    if record is None or run is None:
        log.warning("rollout for run %s: no %s record; nothing to do", order.run_id,
                    "audit" if record is None else "run")
        return record
    if run.status != RunStatus.HANDLING or not _unfinished(record):
        log.info("rollout for run %s already ended (%s); nothing to do", order.run_id, record.outcome)
        return record
    record.data["rollout_tries"] = try_number
    event = RunEvent(event_id=str(record.data.get("event_id") or order.audit_id), event_type=order.via,
                     run_id=order.run_id, experiment="", status=order.status)
    return complete_claimed(event, run, record, completion, retried=True)


def _unfinished(record: AuditRecord) -> bool:
    """Open, or closed `interrupted` by the reconcile timer's sweep of old open records while its message still
    waited for another try (a rollout may outlast that sweep's 15 minutes)."""
    return Outcome(record.outcome).is_open or record.outcome == Outcome.INTERRUPTED


def give_up(order: RolloutOrder, completion: RunCompletion) -> AuditRecord | None:
    """The message exhausted its tries and sits in `<queue>-poison`: the run and its record end `failed` with the
    last error, so nothing waits for a rollout that will not come."""
    runs, audit = completion.runs, completion.deployment.audit
    record, run = audit.get(order.audit_id), runs.get(order.run_id)
    if record is None or not _unfinished(record):
        return record
    tries = record.data.get("rollout_tries") or "its"
    last = record.data.get("last_error") or "each try failed or ran past functionTimeout"
    detail = (f"completion failed: the rollout gave up after {tries} tries (message moved to the poison queue); "
              f"last error: {last}")
    if run is not None and run.status == RunStatus.HANDLING:
        set_run(runs, run, RunStatus.FAILED, detail, model_version=record.model_version)
    return audit.finish(record, Outcome.FAILED, detail)
