"""Durable webhook state in Azure Tables, shared by every Functions instance: replay guard, idempotency keys,
per-caller rate limits, the per-caller count of refused unauthenticated requests (RejectionLog) and the drift
check's single-flight lease (SingleFlight). Each decision is one conditional write (insert, or update on the ETag
just read), so concurrent instances cannot both win; no in-process state is trusted.

Order in the signed routes (shared.services.http_guard): `RejectionLog.throttled`, cheap checks, verify the
signature, `ReplayGuard.remember`, `RateLimiter.hit`, then `IdempotencyStore.begin`, handle, `complete`/`abandon`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

# Times are stored as floats (Edm.Double): a plain int above 2**31 is refused by the SDK as Int32.

_REPLAY_PK = "replay"
_IDEM_PK = "idem"
_RATE_PK = "rate"
_HEX = re.compile(r"[0-9a-f]{1,128}")


def _hash(text: str) -> str:
    """A RowKey for arbitrary text: RowKeys forbid / \\ # ? and control characters and are limited to 1 KiB."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _delete_where(table: TableClient, query: str, parameters: dict[str, Any]) -> int:
    deleted = 0
    for row in table.query_entities(query, parameters=parameters, select=["PartitionKey", "RowKey"]):
        try:
            table.delete_entity(row["PartitionKey"], row["RowKey"])
            deleted += 1
        except ResourceNotFoundError:
            pass
    return deleted


class ReplayGuard:
    """Refuses a second delivery of the same signed request (see webhook_signature.replay_key).

    `window_s` must cover the signature tolerance on both sides (300 s old + 300 s skew): an entry is only purged
    once its timestamp is too old for `verify` to accept anyway, so purging never affects correctness.
    """

    def __init__(self, table: TableClient, window_s: float = 600, purge_every_s: float | None = 600):
        self._table = table
        self.window_s = window_s
        self._purge_every_s = purge_every_s
        self._next_purge = 0.0

    def remember(self, signature_hex: str, timestamp: int, now: float) -> bool:
        """True the first time this signature is seen, False for a replay."""
        key = signature_hex.lower()
        if not _HEX.fullmatch(key):
            raise ValueError("signature_hex must be 1-128 hex characters")
        entity = {"PartitionKey": _REPLAY_PK, "RowKey": key, "timestamp": float(timestamp), "seen_at": float(now),
                  "expires_at": float(timestamp) + self.window_s}
        try:
            self._table.create_entity(entity)
        except ResourceExistsError:
            return False
        if self._purge_every_s is not None and now >= self._next_purge:
            self._next_purge = now + self._purge_every_s
            try:
                self.purge(now)
            except HttpResponseError:
                pass  # opportunistic: the next purge catches up
        return True

    def purge(self, now: float) -> int:
        """Delete entries whose timestamp left the window; returns how many."""
        return _delete_where(self._table, "PartitionKey eq @pk and expires_at lt @now",
                             {"pk": _REPLAY_PK, "now": float(now)})


State = Literal["new", "replay", "in_progress", "conflict"]


@dataclass(frozen=True)
class IdempotencyResult:
    """`new`: handle the request (pass `owner` to complete/abandon). `replay`: answer status/body/location again.
    `in_progress`: the same request is being handled right now (409, retry later). `conflict`: the key was used
    for a different request (422)."""

    state: State
    status: int | None = None
    body: dict | None = None
    location: str | None = None
    owner: str | None = None


class IdempotencyKeyError(ValueError):
    """The Idempotency-Key header is unusable (400)."""


class IdempotencyStore:
    """`Idempotency-Key` handling: a retried request is answered with the first response instead of submitting
    a second training run.

    What to store: `complete` responses that record a side effect (202: the pipeline run was submitted), so a
    retry returns the same run. `abandon` everything that provably did nothing (4xx validation errors, 404
    dataset, 5xx before or at a refused submit): the client fixes or retries with the same key and goes through.
    When the outcome is unknown (the submit timed out, the worker crashed) do neither: the reservation answers
    `in_progress` until `stale_after_s`, then a retry takes it over (at-least-once, never two concurrent).
    Entries older than `ttl_s` (from the reservation) count as absent.
    """

    MAX_KEY = 255
    MAX_BODY_CHARS = 30_000  # a string property holds 64 KiB of UTF-16

    def __init__(self, table: TableClient, ttl_s: float = 86400, stale_after_s: float = 120):
        self._table = table
        self.ttl_s = ttl_s
        self.stale_after_s = stale_after_s

    def _row(self, key: str) -> str:
        if not isinstance(key, str) or not key or len(key) > self.MAX_KEY:
            raise IdempotencyKeyError(f"Idempotency-Key must be 1-{self.MAX_KEY} characters "
                                      f"(got {len(key) if isinstance(key, str) else type(key).__name__})")
        return _hash(key)

    def begin(self, key: str, request_hash: str, now: float) -> IdempotencyResult:
        """Reserve `key` for this request, or say what the stored entry means for it (see IdempotencyResult)."""
        row = self._row(key)
        owner = uuid.uuid4().hex
        fresh = {"PartitionKey": _IDEM_PK, "RowKey": row, "key": key, "request_hash": request_hash,
                 "state": "in_progress", "created_at": float(now), "owner": owner}
        for _ in range(10):
            try:
                self._table.create_entity(fresh)
                return IdempotencyResult("new", owner=owner)
            except ResourceExistsError:
                pass
            try:
                entity = self._table.get_entity(_IDEM_PK, row)
            except ResourceNotFoundError:
                continue  # abandoned meanwhile: try to insert again
            age = now - float(entity["created_at"])
            stale = entity.get("state") == "in_progress" and age >= self.stale_after_s
            if age >= self.ttl_s or stale:
                try:
                    self._table.update_entity(fresh, mode=UpdateMode.REPLACE, etag=entity.metadata["etag"],
                                              match_condition=MatchConditions.IfNotModified)
                    return IdempotencyResult("new", owner=owner)
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue  # another caller replaced or removed it first: look again
            if entity.get("request_hash") != request_hash:
                return IdempotencyResult("conflict")
            if entity.get("state") == "completed":
                return IdempotencyResult("replay", status=int(entity["status"]), body=json.loads(entity["body"]),
                                         location=entity.get("location") or None)
            return IdempotencyResult("in_progress")
        return IdempotencyResult("in_progress")  # lost every race: someone else is handling it

    def complete(self, key: str, status: int, body: dict, location: str | None = None, *,
                 owner: str | None = None, now: float | None = None) -> bool:
        """Store the response for replays. With `owner` (from begin), only while the reservation is still ours."""
        text = json.dumps(body, sort_keys=True)
        if len(text) > self.MAX_BODY_CHARS:
            raise ValueError(f"response body is {len(text)} characters; at most {self.MAX_BODY_CHARS} are stored")
        row = self._row(key)
        try:
            entity = self._table.get_entity(_IDEM_PK, row)
        except ResourceNotFoundError:
            return False
        if owner is not None and entity.get("owner") != owner:
            return False
        done = dict(entity, state="completed", status=int(status), body=text, location=location or "",
                    completed_at=float(time.time() if now is None else now))
        try:
            self._table.update_entity(done, mode=UpdateMode.REPLACE, etag=entity.metadata["etag"],
                                      match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def abandon(self, key: str, *, owner: str | None = None) -> bool:
        """Drop an in-progress reservation so a retry with the same key is handled afresh."""
        row = self._row(key)
        try:
            entity = self._table.get_entity(_IDEM_PK, row)
        except ResourceNotFoundError:
            return False
        if entity.get("state") != "in_progress" or (owner is not None and entity.get("owner") != owner):
            return False
        try:
            self._table.delete_entity(_IDEM_PK, row, etag=entity.metadata["etag"],
                                      match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def purge(self, now: float) -> int:
        """Delete entries past their TTL (housekeeping only: begin already ignores them)."""
        return _delete_where(self._table, "PartitionKey eq @pk and created_at lt @cutoff",
                             {"pk": _IDEM_PK, "cutoff": float(now) - self.ttl_s})


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
        row = _hash(f"{self.scope}:{caller}" if self.scope else caller)
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
                self._table.update_entity(update, mode=UpdateMode.REPLACE, etag=entity.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
            return RateDecision(True, 0, self.limit - count - 1)
        return self._refused(start, now)

    def _refused(self, window_start: float, now: float) -> RateDecision:
        return RateDecision(False, max(1, math.ceil(window_start + self.window_s - now)), 0)  # Retry-After >= 1


_REJECT_PK = "reject"
_CLAIM_PK = "claim"
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
        return f"{_MINUTES - int(minute // self.WINDOW_S):011d}-{_hash(caller)[:40]}"

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
                    self._table.update_entity(update, mode=UpdateMode.REPLACE, etag=entity.metadata["etag"],
                                              match_condition=MatchConditions.IfNotModified)
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
        return _delete_where(self._table, "PartitionKey eq @pk and minute lt @cutoff",
                             {"pk": _REJECT_PK, "cutoff": float(now) - self.retention_s})


@dataclass(frozen=True)
class Claim:
    """`acquired`: this caller holds the lease until `expires_at`. Otherwise `holder` / `location` name who
    does (the running check's audit id and where to read it)."""

    acquired: bool
    holder: str
    location: str = ""
    since: float = 0.0
    expires_at: float = 0.0


class SingleFlight:
    """At most one holder of `name` at a time across every Functions instance: a row created if it does not exist,
    or taken over on its ETag once its lease expired (a holder that died frees it after `lease_s`). Not an
    in-memory lock: two instances racing both try the same conditional write, and one wins."""

    def __init__(self, table: TableClient, name: str, lease_s: float = 900):
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        self._table = table
        self._row = name
        self.lease_s = lease_s

    def acquire(self, holder: str, now: float, location: str = "") -> Claim:
        fresh = {"PartitionKey": _CLAIM_PK, "RowKey": self._row, "holder": holder, "location": location,
                 "since": float(now), "expires_at": float(now) + self.lease_s}
        for _ in range(10):
            try:
                self._table.create_entity(fresh)
                return Claim(True, holder, location, float(now), float(now) + self.lease_s)
            except ResourceExistsError:
                pass
            try:
                entity = self._table.get_entity(_CLAIM_PK, self._row)
            except ResourceNotFoundError:
                continue  # released meanwhile
            if float(entity.get("expires_at", 0)) > now:
                return Claim(False, entity.get("holder", ""), entity.get("location", ""),
                             float(entity.get("since", 0)), float(entity.get("expires_at", 0)))
            try:
                self._table.update_entity(fresh, mode=UpdateMode.REPLACE, etag=entity.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
                return Claim(True, holder, location, float(now), float(now) + self.lease_s)
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
        return Claim(False, "", "")

    def release(self, holder: str) -> bool:
        """Drop the lease if `holder` still holds it (a lease taken over after expiry is left alone)."""
        try:
            entity = self._table.get_entity(_CLAIM_PK, self._row)
        except ResourceNotFoundError:
            return False
        if entity.get("holder") != holder:
            return False
        try:
            self._table.delete_entity(_CLAIM_PK, self._row, etag=entity.metadata["etag"],
                                      match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True
