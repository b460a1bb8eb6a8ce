"""`retrain upload --wait`: follow one upload to its final audit record, by reading what the services stored.

The links, each one written by the service (nothing here guesses from timing):

- upload -> its trigger's record: the blob trigger's record (`trigger` "blob", shared/services/on_upload.py) names
  the blob (`source`, `container/name`) and keeps the ETag of the write it handled (`data["etag"]`), so another
  write of the same name is another record. A delivery that was run again leaves the earlier record `interrupted`
  (or a twin ending `duplicate` "a retried trigger"): the record that carries the upload on is the one followed.
- a record `superseded` by a newer request (coalescing: latest wins) -> the winning trigger's record: the outbox
  keeps the request (id = its trigger's audit id) and `superseded_by`.
- a record `submitted` -> its run (`run_id`; the runs table's `trigger_id` is the record's id) -> the run's
  completion: the `run_completed` (Event Grid, finished by the rollout queue) or `reconcile_timer` record with the
  same `run_id` that ended deployed, kept_champion, rolled_back or failed. The run record says when to look: it
  leaves Submitted/Handling just before that record is finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.domain.blob_names import name_problem, shown
from shared.domain.outcomes import IN_FLIGHT, Outcome
from shared.domain.records import AuditRecord

# a run's completion ends in one of these (shared/services/on_run_completed.py, rollout.py)
COMPLETED = frozenset({Outcome.DEPLOYED, Outcome.KEPT_CHAMPION, Outcome.ROLLED_BACK, Outcome.FAILED})
COMPLETION_FUNCTIONS = ("run_completed", "reconcile_timer")
# final outcomes `retrain upload --wait` exits 0 for; every other one (rejected, failed, rolled_back) exits 1
SUCCEEDED = frozenset({Outcome.DEPLOYED, Outcome.KEPT_CHAMPION, Outcome.DUPLICATE})
# a trigger's record that ends here before any run: final
ENDED_BEFORE_RUN = frozenset({Outcome.DUPLICATE, Outcome.REJECTED, Outcome.FAILED})
# an upload record another delivery of the same write may still take over from (one `queued` has its request in
# the outbox, which the dispatcher ends; one killed before its request existed is closed `interrupted`)
UNSETTLED = frozenset({Outcome.IN_PROGRESS, Outcome.INTERRUPTED})
CLOCK_SKEW_S = 300.0  # a record may start a little before the upload by another clock (the host's)


@dataclass(frozen=True)
class UploadRef:
    """One write of a blob into the incoming container."""

    source: str  # container/name, as the blob trigger names it
    etag: str  # the write's ETag, without quotes
    since: float  # epoch seconds just before the upload

    @property
    def sources(self) -> tuple[str, ...]:
        """How the blob trigger's record names it: as is, or shown by its escaped form when the name is one
        storage calls must not use (shared.domain.blob_names; such a record is `rejected`)."""
        container, _, name = self.source.partition("/")
        return (self.source,) if name_problem(name) is None else (self.source, f"{container}/{shown(name)}")


@dataclass
class FinalOutcome:
    """The upload's final record: the completion of the run it led to, or its trigger's own record when it ended
    before a run (duplicate, rejected, failed)."""

    record: AuditRecord
    upload: AuditRecord
    superseded_by: list[str] = field(default_factory=list)  # the winning requests followed, in order

    @property
    def outcome(self) -> str:
        return str(self.record.outcome)

    @property
    def ok(self) -> bool:
        return self.outcome in SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        return {"final_outcome": self.outcome, "upload_id": self.upload.id, "superseded_by": self.superseded_by,
                **self.record.to_dict()}


class WaitTimedOut(Exception):
    """No final record within the timeout; the message says where the upload stands."""


@dataclass
class _Follow:
    """Where the follow stands: the upload's record, the trigger record carrying it on, its run's id."""

    upload: AuditRecord | None = None
    trigger: AuditRecord | None = None
    superseded_by: list[str] = field(default_factory=list)

    def where(self, ref: UploadRef) -> str:
        if self.upload is None:
            return f"no audit record for {ref.source} (ETag {ref.etag}) yet: has the blob trigger seen it?"
        current = self.trigger or self.upload
        run = f", run {current.run_id}" if current.run_id else ""
        return f"{current.trigger} record {current.id} is {current.outcome}{run}: {current.detail or '-'}"


def _uploads(audit, ref: UploadRef) -> list[AuditRecord]:
    """The blob trigger's records of this write, oldest first (a page of the newest records at a time, back to the
    upload's time)."""
    found = []
    for record in audit.newest(page=100):
        if record.started_at < ref.since - CLOCK_SKEW_S:
            break
        if record.trigger == "blob" and record.source in ref.sources and \
                str(record.data.get("etag") or "").strip('"') == ref.etag:
            found.append(record)
    return found[::-1]


def _carrier(records: list[AuditRecord]) -> AuditRecord | None:
    """The record that carries the upload on: a delivery run again leaves the earlier one `interrupted`, and a
    twin delivery ends `duplicate` beside the one that queued the retrain; the first record that is neither wins,
    else the newest `duplicate` (the rows were registered before by another upload)."""
    live = [r for r in records if r.outcome != Outcome.INTERRUPTED]
    carrying = [r for r in live if r.outcome != Outcome.DUPLICATE]
    if carrying:
        return carrying[0]
    return live[-1] if live else None


def _completion(audit, run_id: str, since: float) -> AuditRecord | None:
    """The record that finished run `run_id` (newest first, back to its submission)."""
    for record in audit.newest(page=100):
        if record.started_at < since - CLOCK_SKEW_S:
            return None
        if record.run_id == run_id and record.function in COMPLETION_FUNCTIONS and record.outcome in COMPLETED:
            return record
    return None


def _step(stores, ref: UploadRef, state: _Follow) -> FinalOutcome | None:
    """One look at the stores: the final outcome once there is one, else None (and `state` moves on)."""
    audit = stores.audit
    if not state.superseded_by and (state.upload is None or state.upload.outcome in UNSETTLED):
        # the upload's own record is not settled yet: read again which delivery's record carries it
        state.upload = _carrier(_uploads(audit, ref)) or state.upload
        state.trigger = state.upload
    if state.upload is None:
        return None
    trigger = audit.get(state.trigger.id) or state.trigger
    state.trigger = trigger
    if trigger.outcome == Outcome.SUPERSEDED:
        request = stores.outbox.get(trigger.id)
        winner = audit.get(request.superseded_by) if request is not None and request.superseded_by else None
        if winner is None:  # nothing to follow: the superseded record is the end
            return FinalOutcome(trigger, state.upload, state.superseded_by)
        state.superseded_by.append(winner.id)
        state.trigger = winner
        return None
    if trigger.outcome in ENDED_BEFORE_RUN and not trigger.run_id:
        return FinalOutcome(trigger, state.upload, state.superseded_by)
    if not trigger.run_id:
        return None  # open, queued (coalescing, a run in flight, a retried submit) or interrupted
    run = stores.runs.get(trigger.run_id)
    if run is None or run.status in IN_FLIGHT:
        return None
    done = _completion(audit, trigger.run_id, run.submitted_at)
    return FinalOutcome(done, state.upload, state.superseded_by) if done is not None else None


def wait_for_outcome(stores, ref: UploadRef, *, timeout_s: float, poll_s: float = 0.5,
                     clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> FinalOutcome:
    """Poll the stores every `poll_s` until the upload's final record exists; WaitTimedOut after `timeout_s`."""
    deadline = clock() + timeout_s
    state = _Follow()
    while True:
        final = _step(stores, ref, state)
        if final is not None:
            return final
        left = deadline - clock()
        if left <= 0:
            raise WaitTimedOut(f"no final outcome within {timeout_s:g} s; {state.where(ref)}")
        sleep(min(poll_s, left))
