"""Per-caller rate limits: a fixed window counted in one row per caller, updated on its ETag."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient

from shared.adapters.webhook_state.tables import replace_if_unchanged, row_key

_RATE_PK = "rate"


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_s: int  # 0 when allowed; otherwise seconds until the caller's window resets (Retry-After)
    remaining: int  # hits left in this window; 0 when the limiter is disabled


class RateLimiter:
    """At most `limit` requests per caller per fixed window of `window_s` seconds; `limit <= 0` disables it.

    One row per caller holds the current window and its count. An increment is an update on the ETag just read;
    on a conflict it re-reads and tries again. A caller that loses `max_attempts` races in a row is refused
    (fail closed: that much contention means it is over its limit anyway).
    """

    def __init__(self, table: TableClient, limit: int, window_s: float, max_attempts: int = 10, scope: str = ""):
        """`scope` namespaces the callers, so one table holds independent limits (e.g. per route)."""
        if limit > 0 and window_s <= 0:
            raise ValueError("window_s must be positive")
        self._table = table
        self.scope = scope
        self.limit = limit
        self.window_s = window_s
        self.max_attempts = max_attempts

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def hit(self, caller: str, now: float) -> RateDecision:
        if not self.enabled:
            return RateDecision(True, 0, 0)
        row = row_key(f"{self.scope}:{caller}" if self.scope else caller)
        start = (now // self.window_s) * self.window_s
        for attempt in range(self.max_attempts):
            if attempt:
                time.sleep(random.uniform(0, 0.01 * attempt))  # jitter, so racing callers spread out
            try:
                entity = self._table.get_entity(_RATE_PK, row)
            except ResourceNotFoundError:
                try:
                    self._table.create_entity({"PartitionKey": _RATE_PK, "RowKey": row, "caller": caller[:255],
                                               "window_start": float(start), "count": 1})
                    return RateDecision(True, 0, self.limit - 1)
                except ResourceExistsError:
                    continue
            stored = float(entity["window_start"])
            window = max(stored, start)  # an instance whose clock lags never reopens a newer window
            count = int(entity["count"]) if stored == window else 0
            if count >= self.limit:
                return self._refused(window, now)
            update = dict(entity, window_start=window, count=count + 1)
            try:
                replace_if_unchanged(self._table, update, entity)
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
            return RateDecision(True, 0, self.limit - count - 1)
        return self._refused(start, now)

    def _refused(self, window_start: float, now: float) -> RateDecision:
        return RateDecision(False, max(1, math.ceil(window_start + self.window_s - now)), 0)  # Retry-After >= 1
