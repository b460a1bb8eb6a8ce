"""Event Grid's push-delivery semantics for the local topics (storage events, Azure ML run events).

As documented in "Event Grid message delivery and retry" (https://learn.microsoft.com/azure/event-grid/
delivery-and-retry):
- one event per POST, the payload an array of one; no order guarantee; at least once;
- Event Grid waits 30 s for an answer, then the attempt counts as failed and the event is queued for a retry;
- retries, best effort, after 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h, until
  the subscription's retry policy ends it: max delivery attempts (1-30, default 30) or event time to live
  (1-1440 minutes, default 1440), whichever comes first;
- a webhook answering 400, 401, 403 or 413 is not retried (dropped: no dead-letter destination is set here).
Not reproduced (told in the docs' local-vs-Azure table): the small randomisation Event Grid adds to each retry
step, skipped retries for an endpoint that looks unhealthy ("delayed delivery"), and the best-effort removal of a
queued retry when a slow answer arrives within 3 minutes.

This module decides; the topics (local/storage_events.py, local/pipeline_endpoint/events.py) keep their own queue
and state, so each persists what it must."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import requests

log = logging.getLogger("eventgrid_delivery")

RETRY_SCHEDULE_S = (10, 30, 60, 300, 600, 1800, 3600, 10800, 21600)
RETRY_EVERY_S_AFTER = 43200
NOT_RETRIED = frozenset({400, 401, 403, 413})  # the webhook row of the "Retry schedule" table
ANSWER_TIMEOUT_S = 30.0
MAX_DELIVERY_ATTEMPTS = 30
EVENT_TTL_S = 1440 * 60


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DROPPED = "dropped"


@dataclass(frozen=True)
class RetryPolicy:
    """An event subscription's retry policy (defaults: Event Grid's)."""

    max_delivery_attempts: int = MAX_DELIVERY_ATTEMPTS
    event_ttl_s: float = EVENT_TTL_S


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    due: float | None = None  # when to try again (RETRY only), on the caller's clock
    why: str = ""


class Poster(Protocol):
    def post(self, url: str, **kwargs: Any) -> requests.Response: ...


def retry_delay_s(attempts_made: int) -> float:
    """Delay before the next attempt once `attempts_made` (>= 1) deliveries failed."""
    if attempts_made < 1:
        raise ValueError("no attempt made yet")
    if attempts_made <= len(RETRY_SCHEDULE_S):
        return RETRY_SCHEDULE_S[attempts_made - 1]
    return RETRY_EVERY_S_AFTER


def decide(status: int | None, *, attempts_made: int, first_at: float, now: float,
           policy: RetryPolicy = RetryPolicy()) -> Decision:
    """What Event Grid does after an attempt answered `status` (None: no answer in time, or no connection)."""
    if status is not None and 200 <= status < 300:
        return Decision(Outcome.DELIVERED)
    if status in NOT_RETRIED:
        return Decision(Outcome.DROPPED, why=f"the webhook answered {status}, which Event Grid does not retry")
    if attempts_made >= policy.max_delivery_attempts:
        return Decision(Outcome.DROPPED, why=f"{attempts_made} attempts made (max delivery attempts)")
    due = now + retry_delay_s(attempts_made)
    if due - first_at > policy.event_ttl_s:
        return Decision(Outcome.DROPPED, why="its time to live ran out")
    return Decision(Outcome.RETRY, due=due)


def post_event(session: Poster, url: str, event: dict[str, Any], *, delivery_count: int, data_version: str,
               metadata_version: str = "1", subscription: str = "", timeout_s: float = ANSWER_TIMEOUT_S) -> int | None:
    """One delivery attempt: the event as an array of one, with Event Grid's `aeg-*` headers
    (https://learn.microsoft.com/azure/event-grid/webhook-event-delivery); the status, or None without an answer in
    `timeout_s`. The URL holds the subscriber's key: it is never logged."""
    headers = {"content-type": "application/json", "aeg-event-type": "Notification",
               "aeg-delivery-count": str(delivery_count), "aeg-data-version": data_version,
               "aeg-metadata-version": metadata_version}
    if subscription:
        headers["aeg-subscription-name"] = subscription
    try:
        return session.post(url, data=json.dumps([event]), timeout=timeout_s, headers=headers).status_code
    except requests.RequestException as exc:
        log.warning("event %s: delivery failed (%s)", event.get("id"), exc.__class__.__name__)
        return None
