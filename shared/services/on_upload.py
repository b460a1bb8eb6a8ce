"""A file landed in the incoming container: validate, register a dataset version, submit a retrain."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from shared import telemetry
from shared.domain.records import AuditRecord, new_id
from shared.domain.validation import canonical_csv, content_hash, validate_csv
from shared.services.retrain import PipelineTarget, request_retrain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadedBlob:
    name: str  # container/blob path, as the blob trigger names it
    data: bytes
    etag: str
    uploaded_at: float | None  # blob Last-Modified


@dataclass(frozen=True)
class UploadLimits:
    min_rows: int
    max_bytes: int


def on_upload(blob: UploadedBlob, *, limits: UploadLimits, target: PipelineTarget, datasets, quarantine,
              pipeline, runs, audit, models=None, function: str = "blob_upload") -> AuditRecord:
    with telemetry.span("blob_upload", kind="consumer", blob=blob.name, etag=blob.etag, size=len(blob.data)) as span:
        record = _on_upload(blob, limits=limits, target=target, datasets=datasets, quarantine=quarantine,
                            pipeline=pipeline, runs=runs, audit=audit, models=models, function=function)
        span.set(outcome=record.outcome, trigger_id=record.id, dataset_version=record.dataset_version)
        if record.outcome == "rejected":
            span.fail(record.detail)
    return record


def _on_upload(blob: UploadedBlob, *, limits: UploadLimits, target: PipelineTarget, datasets, quarantine,
               pipeline, runs, audit, models, function: str) -> AuditRecord:
    record = AuditRecord(id=new_id("blob-"), trigger="blob", function=function, started_at=time.time(),
                         source=blob.name)
    if blob.uploaded_at:
        record.stage("uploaded", blob.uploaded_at)
    record.stage("seen")
    audit.save(record)

    result = validate_csv(blob.data, min_rows=limits.min_rows, max_bytes=limits.max_bytes)
    if not result.ok:
        reason = {"blob": blob.name, "etag": blob.etag, "rejected_at": time.time(), "errors": result.errors,
                  "warnings": result.warnings, "audit_id": record.id,
                  "dialect": result.dialect.name if result.dialect else None}
        where = quarantine.put(blob.name, blob.data, reason)
        record.data["quarantined_to"] = where
        record.finish("rejected", f"rejected: {result.reason()}")
        audit.save(record)
        log.warning("upload %s rejected and quarantined to %s: %s", blob.name, where, result.reason())
        return record
    record.stage("validated")
    record.data.update(rows=result.rows, dialect=result.dialect.name, warnings=result.warnings)
    audit.save(record)

    canonical = canonical_csv(result.frame)
    dataset = datasets.register(canonical, content_hash=content_hash(canonical), rows=result.rows,
                                columns=len(result.frame.columns), source_blob=blob.name, source_etag=blob.etag,
                                dialect=result.dialect.name)
    record.dataset_version = dataset.version
    record.stage("registered")
    audit.save(record)

    try:
        request_retrain(dataset, reason="upload", record=record, pipeline=pipeline, runs=runs, target=target,
                        uploaded_at=blob.uploaded_at, models=models)
    except Exception as exc:
        # Recorded, then raised so the host retries the blob (the registration above is reused on retry).
        record.finish("failed", f"pipeline submit failed: {exc}")
        audit.save(record)
        raise
    record.finish("submitted", f"dataset v{dataset.version} ({result.rows} rows, {result.dialect.name}) submitted")
    audit.save(record)
    return record
