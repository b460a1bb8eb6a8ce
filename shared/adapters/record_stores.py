"""Durable records in Azure Tables: the audit trail, the runs we submitted, and registered models."""

from __future__ import annotations

import time

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.tables import from_entity, to_entity
from shared.domain.records import AuditRecord, ModelVersion, RunRecord

_AUDIT_PK = "audit"
_RUN_PK = "run"
_MODEL_PK = "model"


class AuditStore:
    """Each trigger execution writes its record when it starts and rewrites it as stages pass."""

    def __init__(self, table: TableClient):
        self._table = table

    def save(self, record: AuditRecord) -> None:
        self._table.upsert_entity(to_entity(record, _AUDIT_PK, record.id), mode=UpdateMode.REPLACE)

    def finish(self, record: AuditRecord, outcome: str, detail: str) -> AuditRecord:
        """End a record with its outcome and store it: the last write of every trigger."""
        record.finish(outcome, detail)
        self.save(record)
        return record

    def get(self, record_id: str) -> AuditRecord | None:
        try:
            return from_entity(AuditRecord, self._table.get_entity(_AUDIT_PK, record_id))
        except ResourceNotFoundError:
            return None

    def list(self, limit: int | None = None) -> list[AuditRecord]:
        rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": _AUDIT_PK})
        records = sorted((from_entity(AuditRecord, r) for r in rows), key=lambda r: (r.started_at, r.id))
        return records[-limit:] if limit else records

    def with_outcome(self, outcome: str) -> list[AuditRecord]:
        """Records left in an intermediate outcome (e.g. a drift check waiting for its profiling job)."""
        rows = self._table.query_entities("PartitionKey eq @pk and outcome eq @o",
                                          parameters={"pk": _AUDIT_PK, "o": outcome})
        return sorted((from_entity(AuditRecord, r) for r in rows), key=lambda r: (r.started_at, r.id))

    def claim(self, record_id: str, expected: str, outcome: str) -> AuditRecord | None:
        """Move a record from outcome `expected` to `outcome`, conditional on its ETag: one caller wins."""
        try:
            entity = self._table.get_entity(_AUDIT_PK, record_id)
        except ResourceNotFoundError:
            return None
        record = from_entity(AuditRecord, entity)
        if record.outcome != expected:
            return None
        record.outcome = outcome
        try:
            self._table.update_entity(to_entity(record, _AUDIT_PK, record_id), mode=UpdateMode.REPLACE,
                                      etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            return None
        return record


class RunStore:
    def __init__(self, table: TableClient):
        self._table = table

    def create(self, run: RunRecord) -> None:
        self._table.create_entity(to_entity(run, _RUN_PK, run.run_id))

    def get(self, run_id: str) -> RunRecord | None:
        try:
            return from_entity(RunRecord, self._table.get_entity(_RUN_PK, run_id))
        except ResourceNotFoundError:
            return None

    def claim(self, run_id: str) -> RunRecord | None:
        """Move a submitted run to Handling exactly once, however many events arrive for it."""
        def handling(run: RunRecord) -> None:
            run.status, run.claimed_at = "Handling", time.time()
        return self._transition(run_id, "Submitted", handling)

    def release(self, run_id: str) -> bool:
        """Hand a run stuck in Handling (its handler died) back to Submitted, once, so it is finished again."""
        def submitted(run: RunRecord) -> None:
            run.status, run.detail = "Submitted", "released after an interrupted completion"
        return self._transition(run_id, "Handling", submitted) is not None

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
        return run

    def save(self, run: RunRecord) -> None:
        self._table.upsert_entity(to_entity(run, _RUN_PK, run.run_id), mode=UpdateMode.REPLACE)

    def list(self) -> list[RunRecord]:
        rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": _RUN_PK})
        return sorted((from_entity(RunRecord, r) for r in rows), key=lambda r: r.submitted_at)

    def in_flight(self) -> list[RunRecord]:
        return [r for r in self.list() if r.status in ("Submitted", "Handling")]


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
