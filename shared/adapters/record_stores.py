"""Durable records in Azure Tables: the audit trail, the runs we submitted, and registered models."""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from collections.abc import Iterator

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.tables import from_entity, to_entity
from shared.domain.outcomes import IN_FLIGHT, RunStatus
from shared.domain.records import AuditRecord, ModelVersion, RunRecord

_AUDIT_PK = "audit"
_ID_TIME = re.compile(r"([0-9]{13})-[0-9a-f]{8}$")  # new_id(): <prefix><ms, 13 digits>-<8 hex>
_NEWEST_MS = 10**13 - 1
_RUN_PK = "run"
_RUN_TIME_PK = "run-by-time"  # RunStore's listing copies, newest first
_MODEL_PK = "model"


class AuditStore:
    """Each trigger execution writes its record when it starts and rewrites it as stages pass.

    RowKeys: `!<inverted ms>-<id>` for ids that carry their creation time (shared.domain.records.new_id), so a
    partition query returns the newest first and a page of `limit` rows is all `list(limit)` reads. Records
    written before this layout (RowKey = id) and hand-made ids without a time are "legacy" rows, read after the
    ordered ones (only when those do not fill the page) and rewritten in place.
    """

    _ORDERED, _LEGACY = "!", '"'  # ordered RowKeys start with "!"; every legacy id sorts at or after '"'

    def __init__(self, table: TableClient):
        self._table = table
        self._legacy: set[str] = set()  # ids this instance saw in legacy rows: saved back to the same row

    @classmethod
    def row_key(cls, record_id: str) -> str:
        match = _ID_TIME.search(record_id)
        if match is None or record_id < cls._LEGACY:
            return record_id
        return f"{cls._ORDERED}{_NEWEST_MS - int(match.group(1)):013d}-{record_id}"

    def _key(self, record_id: str) -> str:
        return record_id if record_id in self._legacy else self.row_key(record_id)

    def _load(self, entity) -> AuditRecord:
        record = from_entity(AuditRecord, entity)
        if entity["RowKey"] == record.id:
            self._legacy.add(record.id)
        return record

    def save(self, record: AuditRecord) -> None:
        self._table.upsert_entity(to_entity(record, _AUDIT_PK, self._key(record.id)), mode=UpdateMode.REPLACE)

    def finish(self, record: AuditRecord, outcome: str, detail: str) -> AuditRecord:
        """End a record with its outcome and store it: the last write of every trigger."""
        record.finish(outcome, detail)
        self.save(record)
        return record

    def _entity(self, record_id: str):
        for key in dict.fromkeys((self._key(record_id), record_id)):  # the ordered row, then a legacy one
            try:
                return self._table.get_entity(_AUDIT_PK, key)
            except ResourceNotFoundError:
                continue
        return None

    def get(self, record_id: str) -> AuditRecord | None:
        entity = self._entity(record_id)
        return None if entity is None else self._load(entity)

    def newest(self, page: int = 100) -> Iterator[AuditRecord]:
        """Records newest first, read a page at a time as the caller iterates (ordered rows, then legacy ones)."""
        ordered = self._table.query_entities("PartitionKey eq @pk and RowKey lt @end",
                                             parameters={"pk": _AUDIT_PK, "end": self._LEGACY},
                                             results_per_page=page)
        for entity in ordered:
            yield self._load(entity)
        legacy = self._table.query_entities("PartitionKey eq @pk and RowKey ge @start",
                                            parameters={"pk": _AUDIT_PK, "start": self._LEGACY},
                                            results_per_page=max(page, 1000))
        yield from sorted((self._load(e) for e in legacy), key=lambda r: (r.started_at, r.id), reverse=True)

    def list(self, limit: int | None = None) -> list[AuditRecord]:
        """Oldest first; with `limit`, the newest `limit` records, reading about that many rows."""
        if limit:
            records = list(itertools.islice(self.newest(page=min(limit, 1000)), limit))
        else:
            records = [self._load(r) for r in self._table.query_entities("PartitionKey eq @pk",
                                                                         parameters={"pk": _AUDIT_PK})]
        return sorted(records, key=lambda r: (r.started_at, r.id))

    def with_outcome(self, outcome: str) -> list[AuditRecord]:
        """Records left in an intermediate outcome (e.g. a drift check waiting for its profiling job)."""
        rows = self._table.query_entities("PartitionKey eq @pk and outcome eq @o",
                                          parameters={"pk": _AUDIT_PK, "o": outcome})
        return sorted((self._load(r) for r in rows), key=lambda r: (r.started_at, r.id))

    def claim(self, record_id: str, expected: str, outcome: str) -> AuditRecord | None:
        """Move a record from outcome `expected` to `outcome`, conditional on its ETag: one caller wins."""
        entity = self._entity(record_id)
        if entity is None:
            return None
        record = self._load(entity)
        if record.outcome != expected:
            return None
        record.outcome = outcome
        try:
            self._table.update_entity(to_entity(record, _AUDIT_PK, entity["RowKey"]), mode=UpdateMode.REPLACE,
                                      etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            return None
        return record


class RunStore:
    """Runs keyed by their pipeline run id (partition `run`), plus a copy of each in partition `run-by-time` keyed
    `<inverted submit ms>-<hash of the id>`, written after every change, so `newest(limit)` (GET /api/runs) reads one
    page newest first instead of the whole partition. Reads by id use the `run` row, which is authoritative; runs
    stored before the copies existed are listed from the `run` partition when the copies do not fill the page."""

    def __init__(self, table: TableClient):
        self._table = table

    def create(self, run: RunRecord) -> None:
        self._table.create_entity(to_entity(run, _RUN_PK, run.run_id))
        self._copy(run)

    def _copy(self, run: RunRecord) -> None:
        """The listing copy (best effort: the `run` row is the record; a failed copy shows up stale in lists only)."""
        key = f"{_NEWEST_MS - int(run.submitted_at * 1000):013d}-{hashlib.sha256(run.run_id.encode()).hexdigest()[:24]}"
        try:
            self._table.upsert_entity(to_entity(run, _RUN_TIME_PK, key), mode=UpdateMode.REPLACE)
        except HttpResponseError:
            pass

    def newest(self, limit: int, status: str | None = None) -> list[RunRecord]:
        """At most `limit` runs, newest first, only `status` (case-insensitive) when given; reads about `limit`
        copies (more when filtering by a rare status), and the `run` partition only for runs without a copy."""
        wanted = status.lower() if status else None
        found: list[RunRecord] = []
        seen: set[str] = set()
        for entity in self._table.query_entities("PartitionKey eq @pk", parameters={"pk": _RUN_TIME_PK},
                                                 results_per_page=min(max(limit, 1), 1000)):
            run = from_entity(RunRecord, entity)
            seen.add(run.run_id)
            if wanted is None or run.status.lower() == wanted:
                found.append(run)
                if len(found) >= limit:
                    return found
        legacy = [r for r in self.list() if r.run_id not in seen and (wanted is None or r.status.lower() == wanted)]
        return found + legacy[::-1][:limit - len(found)]

    def get(self, run_id: str) -> RunRecord | None:
        try:
            return from_entity(RunRecord, self._table.get_entity(_RUN_PK, run_id))
        except ResourceNotFoundError:
            return None

    def claim(self, run_id: str) -> RunRecord | None:
        """Move a submitted run to Handling exactly once, however many events arrive for it."""
        def handling(run: RunRecord) -> None:
            run.status, run.claimed_at = RunStatus.HANDLING, time.time()
        return self._transition(run_id, RunStatus.SUBMITTED, handling)

    def release(self, run_id: str) -> bool:
        """Hand a run stuck in Handling (its handler died) back to Submitted, once, so it is finished again."""
        def submitted(run: RunRecord) -> None:
            run.status, run.detail = RunStatus.SUBMITTED, "released after an interrupted completion"
        return self._transition(run_id, RunStatus.HANDLING, submitted) is not None

    def _transition(self, run_id: str, expected: str, change) -> RunRecord | None:
        """Apply `change` to a run in status `expected`, conditional on its ETag: of concurrent callers, one wins."""
        try:
            entity = self._table.get_entity(_RUN_PK, run_id)
        except ResourceNotFoundError:
            return None
        run = from_entity(RunRecord, entity)
        if run.status != expected:
            return None
        change(run)
        try:
            self._table.update_entity(to_entity(run, _RUN_PK, run_id), mode=UpdateMode.REPLACE,
                                      etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            return None
        self._copy(run)
        return run

    def save(self, run: RunRecord) -> None:
        self._table.upsert_entity(to_entity(run, _RUN_PK, run.run_id), mode=UpdateMode.REPLACE)
        self._copy(run)

    def list(self) -> list[RunRecord]:
        rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": _RUN_PK})
        return sorted((from_entity(RunRecord, r) for r in rows), key=lambda r: r.submitted_at)

    def in_flight(self) -> list[RunRecord]:
        return [r for r in self.list() if r.status in IN_FLIGHT]


class ModelRegistry:
    """Registered model versions (1, 2, ...) and which one is live on the scoring endpoint."""

    def __init__(self, table: TableClient):
        self._table = table

    def register(self, *, run_id: str, dataset_version: int, model_dir: str, metrics: dict,
                 digest: str = "") -> ModelVersion:
        for _ in range(50):
            version = (self._latest_number() or 0) + 1
            model = ModelVersion(version=version, run_id=run_id, dataset_version=dataset_version,
                                 model_dir=model_dir, metrics=metrics, registered_at=time.time(), digest=digest)
            try:
                self._table.create_entity(to_entity(model, _MODEL_PK, f"{version:010d}"))
                return model
            except ResourceExistsError:
                continue
        raise RuntimeError("could not allocate a model version after 50 attempts")

    def _latest_number(self) -> int | None:
        models = self.list()
        return models[-1].version if models else None

    def list(self) -> list[ModelVersion]:
        rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": _MODEL_PK})
        return sorted((from_entity(ModelVersion, r) for r in rows), key=lambda m: m.version)

    def get(self, version: int) -> ModelVersion | None:
        try:
            return from_entity(ModelVersion, self._table.get_entity(_MODEL_PK, f"{version:010d}"))
        except ResourceNotFoundError:
            return None

    def set_live(self, version: int) -> None:
        """Make `version` live, remembering the one it replaces (what `retrain rollback` goes back to)."""
        current = self._live_entity()
        previous = current.get("version") if current else None
        entity = {"PartitionKey": "live", "RowKey": "live", "version": version, "since": time.time()}
        if previous is not None and int(previous) != version:
            entity["previous"] = int(previous)
        elif current and current.get("previous") is not None:
            entity["previous"] = int(current["previous"])
        self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def _live_entity(self) -> dict | None:
        try:
            return dict(self._table.get_entity("live", "live"))
        except ResourceNotFoundError:
            return None

    def previous_live(self) -> ModelVersion | None:
        entity = self._live_entity()
        if not entity or entity.get("previous") is None:
            return None
        return self.get(int(entity["previous"]))

    def live(self) -> ModelVersion | None:
        try:
            entity = self._table.get_entity("live", "live")
        except ResourceNotFoundError:
            return None
        return self.get(int(entity["version"]))
