"""A retrain request and the rule that decides between two of them: latest wins.

Every trigger (an upload, the webhook, a drift check) asks for a retrain the same way: a request waits in the
outbox (shared.adapters.outbox stores it) until it is due and nothing is in flight. Only one request waits at a
time; when a second arrives, the one about newer data stays pending and the other ends `superseded` by it, so a
burst of uploads trains once, on the newest version. Pure: no storage, no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.domain.outcomes import RequestStatus


@dataclass
class RetrainRequest:
    # the audit id of the trigger that asked; also the submission's trigger id, which names its run (the lookup key
    # before a resubmission)
    id: str
    trigger: str
    reason: str
    dataset_version: int
    requested_at: float
    not_before: float  # coalescing: not submitted before this
    deadline: float  # retries stop after this; then `failed`
    # a RequestStatus: pending -> submitting -> submitted | failed | unconfirmed; pending -> superseded
    status: str = RequestStatus.PENDING
    parameters: dict[str, Any] = field(default_factory=dict)
    uploaded_at: float | None = None
    attempts: int = 0
    next_attempt_at: float = 0.0
    claimed_at: float | None = None
    run_id: str | None = None
    superseded_by: str | None = None
    last_error: str = ""
    finished_at: float | None = None
    traceparent: str = ""  # the asking trigger's trace: the submission continues it
    summary: str = ""  # how the trigger describes it ("drift: …; dataset v3"), kept in the audit's final detail


def newer(a: RetrainRequest, b: RetrainRequest) -> bool:
    """Whether `a` asks about newer data than `b` (upload time when known, else when it was asked)."""
    return (a.uploaded_at or a.requested_at) > (b.uploaded_at or b.requested_at)


def latest_wins(pending: RetrainRequest, incoming: RetrainRequest) -> tuple[RetrainRequest, RetrainRequest]:
    """(winner, loser) of the pending request and an incoming one: the incoming request wins unless the pending
    one is about newer data (the two were handled out of order)."""
    if newer(pending, incoming):
        return pending, incoming
    return incoming, pending


def supersede(loser: RetrainRequest, winner: RetrainRequest, now: float) -> RetrainRequest:
    """Ends `loser` superseded by `winner` (in place; returns it)."""
    loser.status, loser.superseded_by, loser.finished_at = RequestStatus.SUPERSEDED, winner.id, now
    return loser
