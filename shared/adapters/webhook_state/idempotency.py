"""Idempotency keys: a request retried with the same key gets the first answer back, not a second retrain."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient

from shared.adapters.webhook_state.tables import delete_if_unchanged, delete_where, replace_if_unchanged, row_key
from shared.ports import IdempotencyKeyError  # raised here; POST /api/retrain answers it 400 (shared.services)

_IDEM_PK = "idem"

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
        return row_key(key)

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
                    replace_if_unchanged(self._table, fresh, entity)
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
            replace_if_unchanged(self._table, done, entity)
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
            delete_if_unchanged(self._table, _IDEM_PK, row, entity)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def purge(self, now: float) -> int:
        """Delete entries past their TTL (housekeeping only: begin already ignores them)."""
        return delete_where(self._table, "PartitionKey eq @pk and created_at lt @cutoff",
                             {"pk": _IDEM_PK, "cutoff": float(now) - self.ttl_s})
