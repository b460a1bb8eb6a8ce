"""The durable outbox of retrain requests (shared.domain.retrain_request), in one Azure Table partition: nothing asked
for is lost, nothing is submitted twice, and at most one request waits for the pipeline at a time.

A request is written together with the *slot* row that points at the one pending request, in a single entity group
transaction (same partition: atomic on Azure Tables and Azurite). A newer request takes the slot and marks the one
it displaces `superseded` in the same transaction (latest wins: shared.domain.retrain_request). The dispatcher
claims the pending request (`pending` -> `submitting`, slot emptied, atomically, conditional on both ETags: of two
instances, one wins), submits it, and ends it `submitted` or puts it back (`pending`, with the next attempt's time)
— unless a newer request took the slot meanwhile, which supersedes it. A claim older than its lease (the instance
died mid-submit) is put back as `unconfirmed`: before it is submitted again, the dispatcher looks up the run an
earlier attempt may have started (PipelineClient.find_run by the trigger id; neither Azure ML API deduplicates a
resubmission), so a request never starts two runs."""

from __future__ import annotations

import time
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.adapters.tables import from_entity, to_entity
from shared.domain.outcomes import RequestStatus
from shared.domain.retrain_request import RetrainRequest, latest_wins, supersede

_PK = "retrain"
_SLOT = "~slot"


class Contention(RuntimeError):
    pass


def _etag(entity) -> dict[str, Any]:
    return {"etag": entity.metadata["etag"], "match_condition": MatchConditions.IfNotModified}


class Outbox:
    def __init__(self, table: TableClient, *, attempts: int = 20):
        self._table = table
        self._attempts = attempts

    # ------------------------------------------------------------------------------------------ reading

    def get(self, request_id: str) -> RetrainRequest | None:
        try:
            return from_entity(RetrainRequest, self._table.get_entity(_PK, request_id))
        except ResourceNotFoundError:
            return None

    def list(self, status: str | None = None) -> list[RetrainRequest]:
        query, params = "PartitionKey eq @pk and RowKey ne @slot", {"pk": _PK, "slot": _SLOT}
        if status:
            query, params = query + " and status eq @s", {**params, "s": status}
        rows = self._table.query_entities(query, parameters=params)
        return sorted((from_entity(RetrainRequest, r) for r in rows), key=lambda r: (r.requested_at, r.id))

    def pending(self) -> RetrainRequest | None:
        slot = self._slot()
        pending_id = slot.get("pending") if slot else None
        return self.get(pending_id) if pending_id else None

    def _slot(self):
        try:
            return self._table.get_entity(_PK, _SLOT)
        except ResourceNotFoundError:
            return None

    # ------------------------------------------------------------------------------------------ writing

    def _transact(self, build) -> Any:
        """Run `build()` -> (operations, result) as one transaction, again on a lost race."""
        for attempt in range(self._attempts):
            operations, result = build()
            try:
                if operations:
                    self._table.submit_transaction(operations)
                return result
            except TableTransactionError:
                time.sleep(min(0.2, 0.005 * 2**attempt))
        raise Contention(f"outbox: no conditional write won after {self._attempts} attempts")

    def _take_slot(self, request: RetrainRequest, operations: list, slot) -> RetrainRequest | None:
        """Point the slot at `request`, superseding the request it pointed at; returns the superseded one."""
        displaced = None
        if slot is None:
            operations.append(("create", {"PartitionKey": _PK, "RowKey": _SLOT, "pending": request.id}))
            return None
        previous_id = slot.get("pending") or ""
        if previous_id and previous_id != request.id:
            entity = self._table.get_entity(_PK, previous_id)
            displaced = from_entity(RetrainRequest, entity)
            if displaced.status == RequestStatus.PENDING:
                winner, loser = latest_wins(displaced, request)
                supersede(loser, winner, time.time())
                if loser is request:  # handled out of order: the pending one is the newer data
                    operations[0] = ("create", to_entity(request, _PK, request.id))
                    operations.append(("update", dict(slot), {"mode": UpdateMode.REPLACE, **_etag(slot)}))
                    return request
                operations.append(("update", to_entity(displaced, _PK, displaced.id), {"mode": UpdateMode.REPLACE,
                                                                                       **_etag(entity)}))
            else:
                displaced = None
        operations.append(("update", {"PartitionKey": _PK, "RowKey": _SLOT, "pending": request.id},
                           {"mode": UpdateMode.REPLACE, **_etag(slot)}))
        return displaced

    def enqueue(self, request: RetrainRequest) -> RetrainRequest | None:
        """Store a new request as the pending one; returns the request that ended superseded, if any: the one it
        displaced, or — when the pending one is about newer data (handled out of order) — the new one itself."""
        def build():
            operations: list = [("create", to_entity(request, _PK, request.id))]
            displaced = self._take_slot(request, operations, self._slot())
            return operations, displaced
        return self._transact(build)

    def claim(self, now: float) -> RetrainRequest | None:
        """The request to submit now, moved to `submitting`: an unconfirmed one first (it may already have a run),
        else the pending one, if it is due."""
        for waiting in self.list(RequestStatus.UNCONFIRMED):
            if waiting.next_attempt_at <= now:
                claimed = self._claim_unconfirmed(waiting.id, now)
                if claimed is not None:
                    return claimed
        def build():
            slot = self._slot()
            if not slot or not slot.get("pending"):
                return [], None
            entity = self._table.get_entity(_PK, slot["pending"])
            request = from_entity(RetrainRequest, entity)
            if request.status != RequestStatus.PENDING or request.not_before > now or request.next_attempt_at > now:
                return [], None
            request.status, request.claimed_at, request.attempts = RequestStatus.SUBMITTING, now, request.attempts + 1
            return [("update", {"PartitionKey": _PK, "RowKey": _SLOT, "pending": ""},
                     {"mode": UpdateMode.REPLACE, **_etag(slot)}),
                    ("update", to_entity(request, _PK, request.id), {"mode": UpdateMode.REPLACE,
                                                                     **_etag(entity)})], request
        return self._transact(build)

    def _claim_unconfirmed(self, request_id: str, now: float) -> RetrainRequest | None:
        entity = self._table.get_entity(_PK, request_id)
        request = from_entity(RetrainRequest, entity)
        if request.status != RequestStatus.UNCONFIRMED:
            return None
        request.status, request.claimed_at, request.attempts = RequestStatus.SUBMITTING, now, request.attempts + 1
        try:
            self._table.update_entity(to_entity(request, _PK, request.id), mode=UpdateMode.REPLACE,
                                      **_etag(entity))
        except ResourceModifiedError:
            return None
        return request

    def release(self, request_id: str, *, error: str, next_attempt_at: float, expected: str = RequestStatus.SUBMITTING,
                deadline: float | None = None, maybe_started: bool = False) -> RetrainRequest | None:
        """Put a claimed (or failed, for a retry by hand) request back as pending — or supersede it when a newer
        request holds the slot. An attempt that may have started a run (no answer, a 5xx, a dead instance) is never
        superseded: it becomes `unconfirmed` and is claimed first; the dispatcher then looks up the run it may have
        started (find_run) and records it, or submits when there is none. Returns the stored request (None: not in
        `expected`)."""
        def build():
            entity = self._table.get_entity(_PK, request_id)
            request = from_entity(RetrainRequest, entity)
            if request.status != expected:
                return [], None
            if maybe_started:
                request.status, request.claimed_at, request.last_error = RequestStatus.UNCONFIRMED, None, error
                request.next_attempt_at = next_attempt_at
                request.deadline = request.deadline if deadline is None else deadline
                return [("update", to_entity(request, _PK, request.id), {"mode": UpdateMode.REPLACE,
                                                                         **_etag(entity)})], request
            slot = self._slot()
            newer = (slot or {}).get("pending") or ""
            request.last_error, request.claimed_at = error, None
            request.deadline = request.deadline if deadline is None else deadline
            operations: list = []
            if newer and newer != request.id:
                request.status, request.superseded_by = RequestStatus.SUPERSEDED, newer
                request.finished_at = time.time()
            else:
                request.status, request.next_attempt_at = RequestStatus.PENDING, next_attempt_at
                if slot is None:
                    operations.append(("create", {"PartitionKey": _PK, "RowKey": _SLOT, "pending": request.id}))
                else:
                    operations.append(("update", {"PartitionKey": _PK, "RowKey": _SLOT, "pending": request.id},
                                       {"mode": UpdateMode.REPLACE, **_etag(slot)}))
            operations.append(("update", to_entity(request, _PK, request.id),
                               {"mode": UpdateMode.REPLACE, **_etag(entity)}))
            return operations, request
        return self._transact(build)

    def finish(self, request_id: str, status: str, *, run_id: str | None = None, error: str = "") -> RetrainRequest:
        """End a claimed request: `submitted` (with its run) or `failed` (with the reason)."""
        def build():
            entity = self._table.get_entity(_PK, request_id)
            request = from_entity(RetrainRequest, entity)
            request.status, request.run_id, request.finished_at = status, run_id, time.time()
            request.last_error = error or request.last_error
            return [("update", to_entity(request, _PK, request.id), {"mode": UpdateMode.REPLACE,
                                                                     **_etag(entity)})], request
        return self._transact(build)

    def stale(self, now: float, lease_s: float) -> list[RetrainRequest]:
        """Claims older than the lease: their dispatcher stopped before ending them."""
        return [r for r in self.list(RequestStatus.SUBMITTING) if (r.claimed_at or 0) < now - lease_s]
