"""A file landed in the incoming container: validate, register a dataset version, ask for a retrain.

The blob's name is checked first (shared.domain.blob_names): a name storage calls must not use is quarantined
under its hash and used nowhere else."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from shared import telemetry
from shared.domain.blob_names import BlobNameProblem, explain, name_digest, name_problem, shown
from shared.domain.outcomes import Outcome
from shared.domain.records import AuditRecord, new_id
from shared.domain.uploads import UploadedBlob
from shared.domain.validation import canonical_csv, content_hash, validate_csv
from shared.ports import QuarantineArea, UploadSource
from shared.services.dispatch import RetrainDispatch, request_and_dispatch

__all__ = ["UploadIntake", "UploadLimits", "UploadedBlob", "handle_unrecorded_uploads", "on_upload",
           "resume_interrupted_uploads"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadLimits:
    min_rows: int
    max_bytes: int


@dataclass(frozen=True)
class UploadIntake:
    """What an upload needs: the limits it is validated against, the quarantine for refused files, and the way
    to ask for a retrain (whose stores also register the dataset version and keep the audit record)."""

    limits: UploadLimits
    quarantine: QuarantineArea
    retrain: RetrainDispatch
    source: UploadSource | None = None  # the incoming blobs by name: a killed delivery's upload is handled again


def on_upload(blob: UploadedBlob, intake: UploadIntake, function: str = "blob_upload") -> AuditRecord:
    """A valid upload becomes a dataset version (or a `duplicate of vN`) and a retrain request in the outbox,
    submitted after the coalescing window when nothing is in flight (`shared.services.dispatch`)."""
    container, _, name = blob.name.partition("/")
    problem = name_problem(name)
    label = blob.name if problem is None else f"{container}/{shown(name)}"
    with telemetry.span("blob_upload", kind="consumer", blob=label, etag=blob.etag, size=len(blob.data)) as span:
        if problem is not None:
            record = _refuse_name(blob, container, name, problem, intake, function)
        else:
            record = _register(blob, intake, function)
        _close_earlier_deliveries(record, intake)
        span.set(outcome=record.outcome, trigger_id=record.id, dataset_version=record.dataset_version)
        if record.outcome == Outcome.REJECTED:
            span.fail(record.detail)
    return record


def resume_interrupted_uploads(intake: UploadIntake, *, older_than_s: float, now: float | None = None,
                               function: str = "reconcile_timer") -> int:
    """Handle again every upload whose delivery stopped half-way: a blob record still `in_progress` (or `queued`
    with no request: killed between the two writes) older than `older_than_s` is run again from the blob as it is
    now, and the new record closes the old one (`_close_earlier_deliveries`). Azure's blob trigger does run a killed
    delivery again, but only when its queue message becomes visible again (10 minutes; the local host's trigger
    queue too). Running it again is safe whoever else does: a second delivery of one blob
    registers the same version and finds its request (`_register`). Returns how many were run again."""
    if intake.source is None:
        return 0
    now = time.time() if now is None else now
    audit, outbox = intake.retrain.audit, intake.retrain.outbox
    resumed = 0
    for outcome in (Outcome.IN_PROGRESS, Outcome.QUEUED):
        for record in audit.with_outcome(outcome):
            if record.trigger != "blob" or now - record.started_at <= older_than_s or "seen" not in record.stages:
                continue
            if outcome == Outcome.QUEUED and outbox.get(record.id) is not None:
                continue  # its request exists: the dispatcher ends it
            blob = intake.source.read(record.source)
            if blob is None:  # quarantined or deleted meanwhile: nothing left to handle
                if audit.claim(record.id, outcome, Outcome.INTERRUPTED):
                    stored = audit.get(record.id) or record
                    audit.finish(stored, Outcome.INTERRUPTED, f"this delivery stopped after "
                                 f"{', '.join(stored.stages)} (host stopped or killed); {record.source} is gone")
                continue
            log.warning("upload %s: its delivery (record %s) stopped half-way; handling it again", record.source,
                        record.id)
            on_upload(blob, intake, function)
            resumed += 1
    return resumed


UPLOAD_LOOKBACK_S = 24 * 3600.0  # Event Grid retries a delivery for 24 hours by default, then drops it
CLOCK_SKEW_S = 300.0  # a record may start a little before the blob's Last-Modified by another clock


def handle_unrecorded_uploads(intake: UploadIntake, *, older_than_s: float, now: float | None = None,
                              lookback_s: float = UPLOAD_LOOKBACK_S, function: str = "reconcile_timer") -> int:
    """Handle every upload that has no record at all: its BlobCreated never reached a delivery that wrote one (the
    host was killed between taking the event from its trigger queue and the first write: Azure runs it again only
    when the message is visible again, 10 minutes on; an event Event Grid dropped after its retries; a subscription
    that was down). A blob of the incoming container written in the last `lookback_s`, more than `older_than_s`
    ago, whose name and ETag no blob record has, is handled now from the blob. A delivery that comes later is a
    twin (same version, same request: `_register`). Reads one listing and the audit records since the oldest such
    blob, newest first. Returns how many were handled."""
    if intake.source is None:
        return 0
    now = time.time() if now is None else now
    listed = [b for b in intake.source.listed(now - lookback_s) if now - b.modified > older_than_s]
    if not listed:
        return 0
    oldest = min(b.modified for b in listed)
    recorded: set[tuple[str, str]] = set()
    named: set[str] = set()  # records written before they kept the ETag: the name alone counts
    for record in intake.retrain.audit.newest(page=200):
        if record.started_at < oldest - CLOCK_SKEW_S:
            break
        if record.trigger == "blob" and record.source:
            etag = record.data.get("etag")
            if etag:
                recorded.add((record.source, etag))
            else:
                named.add(record.source)
    handled = 0
    for listing in sorted(listed, key=lambda b: b.modified):
        container, _, name = listing.name.partition("/")
        unusable = name_problem(name) is not None
        source = f"{container}/{shown(name)}" if unusable else listing.name
        if (source, listing.etag[:100]) in recorded or source in named:
            continue
        if unusable:  # never read by a name storage calls must not use: refused and recorded from the listing
            blob: UploadedBlob | None = UploadedBlob(listing.name, b"", listing.etag, listing.modified)
        else:
            blob = intake.source.read(listing.name)
            if blob is None or blob.etag != listing.etag:
                continue  # gone, or written again since the listing: that write has an event of its own
        log.warning("upload %s (ETag %s) has no record: its event never reached a delivery; handling it now", source,
                    listing.etag)
        on_upload(blob, intake, function)
        handled += 1
    return handled


def _close_earlier_deliveries(record: AuditRecord, intake: UploadIntake) -> None:
    """This delivery handled the upload: the records earlier deliveries of the same blob left open end
    `interrupted`, pointing here. The blob trigger runs a delivery again when the one before was killed (the queue
    message reappears) and Event Grid may deliver a BlobCreated twice; without this, a killed delivery's record
    stays `in_progress` (or `queued` with no request: killed between the two writes) for the reconcile timer's
    15-minute sweep. Conditional (`claim`): a delivery still alive that writes afterwards keeps its own outcome."""
    audit, outbox = intake.retrain.audit, intake.retrain.outbox
    for outcome in (Outcome.IN_PROGRESS, Outcome.QUEUED):
        for other in audit.with_outcome(outcome):
            if other.id == record.id or other.trigger != "blob" or other.source != record.source or \
                    other.started_at > record.started_at:
                continue
            if outcome == Outcome.QUEUED and outbox.get(other.id) is not None:
                continue  # its request exists: the dispatcher ends it
            if audit.claim(other.id, outcome, Outcome.INTERRUPTED):
                stored = audit.get(other.id) or other
                audit.finish(stored, Outcome.INTERRUPTED,
                             f"this delivery stopped after {', '.join(stored.stages) or 'start'} (host stopped or "
                             f"killed); the upload was handled by record {record.id} ({record.outcome})")


def _refuse_name(blob: UploadedBlob, container: str, name: str, problem: BlobNameProblem, intake: UploadIntake,
                 function: str) -> AuditRecord:
    """A name the storage calls must not use: the content the trigger handed over is kept under the name's hash
    with the reason; the name is not used in any path, read or delete (the blob stays in `container`)."""
    audit = intake.retrain.audit
    label = shown(name)
    digest = name_digest(name)
    record = AuditRecord(id=new_id("blob-"), trigger="blob", function=function, started_at=time.time(),
                         source=f"{container}/{label}", data={"etag": blob.etag[:100]})
    if blob.uploaded_at:
        record.stage("uploaded", blob.uploaded_at)
    record.stage("seen")
    audit.save(record)
    left = (f"left in {container}: deleting it by this name could address another blob (URL path normalisation) "
            "or fail; remove it with a tool that addresses it exactly")
    reason = {"blob_name": label, "blob_name_sha256": digest, "blob_name_length": len(name),
              "container": container, "problem": problem.value, "errors": [explain(problem)],
              "etag": blob.etag[:100], "bytes": len(blob.data), "rejected_at": time.time(), "audit_id": record.id,
              "source": left}
    where = intake.quarantine.put_refused_name(digest, record.id, blob.data, reason, metadata={
        "reason": problem.value, "blob_name_sha256": digest, "blob_name": label, "audit_id": record.id})
    record.data.update(quarantined_to=where, blob_name_sha256=digest, name_problem=problem.value)
    log.warning("upload %s/%s refused (%s) and kept as %s", container, label, problem.value, where)
    return audit.finish(record, Outcome.REJECTED, f"rejected: {explain(problem)}; quarantined as {where}; {left}")


def _register(blob: UploadedBlob, intake: UploadIntake, function: str) -> AuditRecord:
    """Validate, register the dataset version (or find it is a duplicate), ask for a retrain."""
    audit, datasets = intake.retrain.audit, intake.retrain.datasets
    record = AuditRecord(id=new_id("blob-"), trigger="blob", function=function, started_at=time.time(),
                         source=blob.name, data={"etag": blob.etag[:100]})
    if blob.uploaded_at:
        record.stage("uploaded", blob.uploaded_at)
    record.stage("seen")
    audit.save(record)

    result = validate_csv(blob.data, min_rows=intake.limits.min_rows, max_bytes=intake.limits.max_bytes)
    if not result.ok:
        reason = {"blob": blob.name, "etag": blob.etag, "rejected_at": time.time(), "errors": result.errors,
                  "details": result.details(),
                  "warnings": result.warnings, "audit_id": record.id,
                  "dialect": result.dialect.name if result.dialect else None}
        where = intake.quarantine.put(blob.name, blob.data, reason)
        record.data["quarantined_to"] = where
        record.finish(Outcome.REJECTED, f"rejected: {result.reason()}")
        audit.save(record)
        log.warning("upload %s rejected and quarantined to %s: %s", blob.name, where, result.reason())
        return record
    record.stage("validated")
    record.data.update(rows=result.rows, dialect=result.dialect.name, warnings=result.warnings)
    audit.save(record)

    canonical = canonical_csv(result.frame)
    digest = content_hash(canonical)
    owner = datasets.claim_content(digest, blob.name, blob.etag)  # every registration below claims its rows first
    if owner is not None:  # the same rows were uploaded before (or are being registered right now)
        same = datasets.find_by_source(owner["source_blob"], owner["source_etag"]) or datasets.find_by_hash(digest)
        record.dataset_version = same.version if same else None
        first = f"v{same.version}" if same else f"{owner['source_blob']} (being registered)"
        return audit.finish(record, Outcome.DUPLICATE, f"duplicate of {first} (same rows as {owner['source_blob']}); "
                                                 "no new version, no retrain")
    dataset = datasets.register(canonical, content_hash=digest, rows=result.rows,
                                columns=len(result.frame.columns), source_blob=blob.name, source_etag=blob.etag,
                                dialect=result.dialect.name)
    record.dataset_version = dataset.version
    record.stage("registered")
    audit.save(record)
    if any(r.dataset_version == dataset.version for r in intake.retrain.outbox.list()):
        # the host retried this blob after a crash: its version and request already exist
        return audit.finish(record, Outcome.DUPLICATE, f"v{dataset.version} was already registered and queued for this "
                                                 "blob (a retried trigger)")
    _, record = request_and_dispatch(record, dataset, intake.retrain, reason="upload", coalesce=True,
                                     uploaded_at=blob.uploaded_at,
                                     detail=f"dataset v{dataset.version} ({result.rows} rows, {result.dialect.name})")
    return record
