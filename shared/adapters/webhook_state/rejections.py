"""The per-caller, per-minute count of requests refused before they authenticated, which is also their throttle."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient

from shared.adapters.webhook_state.rate_limit import RateDecision
from shared.adapters.webhook_state.tables import delete_where, replace_if_unchanged, row_key

_REJECT_PK = "reject"
_MINUTES = 10**10  # inverted minute numbers sort newest first; 10**10 minutes is ~19,000 years


@dataclass(frozen=True)
class RejectionCount:
    """One caller's refused, unauthenticated requests in one minute (what an operator reads)."""

    caller: str
    minute: float  # Unix seconds at the start of the minute
    count: int
    first_at: float
    last_at: float
    reasons: tuple[dict, ...]  # the last few: {"at", "route", "status", "reason"}


class RejectionLog:
    """Requests refused before they authenticated (no or a bad signature, a replay, wrong method, size or media
    type) are counted per caller and minute in ONE row with the last few reasons, not one audit row each, so a
    flood cannot grow the audit trail. The same row is the throttle: once a caller has had more than `limit`
    refusals in the current minute, `throttled` says so from a single point read, before anything is written.

    Rows are keyed `<inverted minute>-<caller hash>` in one partition, so the newest minutes list first with a
    bounded query; rows older than `retention_s` are purged opportunistically.
    """

    WINDOW_S = 60
    KEEP_REASONS = 5
    MAX_REASON = 300

    def __init__(self, table: TableClient, limit: int = 10, retention_s: float = 7 * 86400,
                 purge_every_s: float | None = 3600, max_attempts: int = 10):
        self._table = table
        self.limit = limit
        self.retention_s = retention_s
        self._purge_every_s = purge_every_s
        self._next_purge = 0.0
        self.max_attempts = max_attempts

    def _minute(self, now: float) -> float:
        return (now // self.WINDOW_S) * self.WINDOW_S

    def _row(self, caller: str, minute: float) -> str:
        return f"{_MINUTES - int(minute // self.WINDOW_S):011d}-{row_key(caller)[:40]}"

    def throttled(self, caller: str, now: float) -> RateDecision:
        """Refused (429, Retry-After = the rest of the minute) when this caller already had more than `limit`
        refusals this minute; `limit <= 0` never throttles. One point read, no write."""
        if self.limit <= 0:
            return RateDecision(True, 0, 0)
        minute = self._minute(now)
        try:
            entity = self._table.get_entity(_REJECT_PK, self._row(caller, minute))
        except ResourceNotFoundError:
            return RateDecision(True, 0, self.limit)
        count = int(entity.get("count", 0))
        if count > self.limit:
            return RateDecision(False, max(1, math.ceil(minute + self.WINDOW_S - now)), 0)
        return RateDecision(True, 0, self.limit - count)

    def record(self, caller: str, *, route: str, status: int, reason: str, now: float) -> int:
        """Count one refusal; returns the caller's count this minute (0 when it could not be stored: counting is
        best effort and never turns a refusal into a server error)."""
        minute = self._minute(now)
        row = self._row(caller, minute)
        note = {"at": round(float(now), 3), "route": route[:60], "status": int(status),
                "reason": reason[:self.MAX_REASON]}
        try:
            for attempt in range(self.max_attempts):
                if attempt:
                    time.sleep(random.uniform(0, 0.01 * attempt))
                try:
                    entity = self._table.get_entity(_REJECT_PK, row)
                except ResourceNotFoundError:
                    try:
                        self._table.create_entity({
                            "PartitionKey": _REJECT_PK, "RowKey": row, "caller": caller[:255],
                            "minute": float(minute), "count": 1, "first_at": float(now), "last_at": float(now),
                            "reasons": json.dumps([note])})
                        self._maybe_purge(now)
                        return 1
                    except ResourceExistsError:
                        continue
                reasons = (json.loads(entity.get("reasons") or "[]") + [note])[-self.KEEP_REASONS:]
                count = int(entity.get("count", 0)) + 1
                update = dict(entity, count=count, last_at=float(now), reasons=json.dumps(reasons))
                try:
                    replace_if_unchanged(self._table, update, entity)
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue
                return count
        except HttpResponseError:
            return 0
        return 0

    def list(self, limit: int = 50) -> list[RejectionCount]:
        """The newest caller-minutes first, reading at most `limit` rows."""
        rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": _REJECT_PK},
                                          results_per_page=min(max(limit, 1), 1000))
        found = []
        for entity in rows:
            found.append(RejectionCount(caller=entity.get("caller", ""), minute=float(entity.get("minute", 0)),
                                        count=int(entity.get("count", 0)),
                                        first_at=float(entity.get("first_at", 0)),
                                        last_at=float(entity.get("last_at", 0)),
                                        reasons=tuple(json.loads(entity.get("reasons") or "[]"))))
            if len(found) >= limit:
                break
        return found

    def _maybe_purge(self, now: float) -> None:
        if self._purge_every_s is None or now < self._next_purge:
            return
        self._next_purge = now + self._purge_every_s
        try:
            self.purge(now)
        except HttpResponseError:
            pass  # opportunistic

    def purge(self, now: float) -> int:
        """Delete caller-minutes older than the retention."""
        return delete_where(self._table, "PartitionKey eq @pk and minute lt @cutoff",
                             {"pk": _REJECT_PK, "cutoff": float(now) - self.retention_s})
