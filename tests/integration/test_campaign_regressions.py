"""Bugs the fault campaign (bench/faults.py) found, each replayed deterministically on Azurite: the interleaving the
campaign produced by chance is forced here step by step (one call made to run inside another at the point where
the campaign's timing put it), no sleeps, no threads.

Seed numbers and evidence: docs/reliability.md, "Fault campaign"."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from shared.adapters import storage
from shared.adapters.credentials import StaticTokenCredential
from shared.adapters.incoming import IncomingBlobs
from shared.adapters.outbox import Outbox
from shared.adapters.pipeline_client import PublishedPipelineClient
from shared.adapters.quarantine import Quarantine
from shared.bootstrap import build_stores
from shared.domain.outcomes import Outcome
from shared.domain.validation import canonical_csv, content_hash, validate_csv
from shared.services.dispatch import DispatchPolicy, RetrainDispatch
from shared.services.on_upload import (
    UploadedBlob,
    UploadIntake,
    UploadLimits,
    handle_unrecorded_uploads,
    on_upload,
    resume_interrupted_uploads,
)
from shared.services.retrain import PipelineTarget
from tests.isolation import isolated_settings
from tests.raw_blob import put_raw

TARGET = PipelineTarget(experiment="exp", datastore="workspaceblobstore", data_input="training_data", budget_s=5)
# a long coalescing window: nothing is submitted while a test replays its uploads (no pipeline call is made)
POLICY = DispatchPolicy(coalesce_s=600, deadline_s=900, backoff_s=5, max_backoff_s=60, lease_s=120)
LIMITS = UploadLimits(min_rows=100, max_bytes=50_000_000)


@pytest.fixture
def env(azurite):
    settings = isolated_settings(azurite)
    blobs = storage.blob_service(settings)
    incoming, quarantine = f"incoming{uuid.uuid4().hex[:8]}", f"quarantine{uuid.uuid4().hex[:8]}"
    for container in (settings.datasets_container, incoming, quarantine):
        storage.ensure_container(blobs, container)
    stores = build_stores(settings)
    outbox = Outbox(storage.ensure_table(storage.table_service(settings), settings.outbox_table))
    return type("Env", (), {"stores": stores, "outbox": outbox, "blobs": blobs, "incoming": incoming,
                            "quarantine": Quarantine(blobs, quarantine)})


def uploaded(env, name: str, data: bytes) -> UploadedBlob:
    props = env.blobs.get_blob_client(env.incoming, name).upload_blob(data, overwrite=True)
    return UploadedBlob(name=f"{env.incoming}/{name}", data=data, etag=props["etag"].strip('"'),
                        uploaded_at=props["last_modified"].timestamp())


def intake(env) -> UploadIntake:
    # the pipeline is never called here (see POLICY); a client that could not reach anything
    pipeline = PublishedPipelineClient("http://127.0.0.1:9/pipelines/v1.0/x/PipelineRuns/PipelineSubmit/p",
                                       StaticTokenCredential("t"), max_retries=0)
    retrain = RetrainDispatch(outbox=env.outbox, runs=env.stores.runs, pipeline=pipeline,
                              datasets=env.stores.datasets, audit=env.stores.audit,
                              models=env.stores.models, target=TARGET, policy=POLICY)
    return UploadIntake(limits=LIMITS, quarantine=env.quarantine, retrain=retrain,
                        source=IncomingBlobs(env.blobs, env.incoming))


class TwinInsideLookup:
    """One delivery of an upload with the other delivery of the same blob run to its end at the moment the first has
    looked its source up (DatasetStore.find_by_source) and found nothing (seed 2, v2: both deliveries were past
    that lookup before either had written its version). Patches the store instance while active."""

    def __init__(self, store, twin):
        self._store, self._twin, self.twin_result = store, twin, None

    def __enter__(self) -> TwinInsideLookup:
        original = self._store.find_by_source

        def lookup(source_blob: str, source_etag: str):
            found = original(source_blob, source_etag)
            if self._twin is not None:  # once: the twin's own lookup is a plain one
                twin, self._twin = self._twin, None
                self.twin_result = twin()
            return found

        self._store.find_by_source = lookup
        return self

    def __exit__(self, *exc) -> None:
        del self._store.find_by_source  # the class's method again
        assert self.twin_result is not None, "the interleaving did not happen"


# -- seed 2 (v2, Event Grid blob source): two deliveries of one BlobCreated registered it as v8 and v9 ----------
def test_two_deliveries_of_one_upload_interleaved_in_register_share_one_version(env, small_bank_csv):
    data = small_bank_csv.read_bytes()
    blob = uploaded(env, "twice.csv", data)
    result = validate_csv(data, min_rows=LIMITS.min_rows, max_bytes=LIMITS.max_bytes)
    canonical = canonical_csv(result.frame)
    digest = content_hash(canonical)
    store = env.stores.datasets

    def register():
        return store.register(canonical, content_hash=digest, rows=result.rows, columns=len(result.frame.columns),
                              source_blob=blob.name, source_etag=blob.etag, dialect=result.dialect.name)

    # both deliveries own the content claim (same blob, same ETag: it cannot tell a twin from a retry)
    assert store.claim_content(digest, blob.name, blob.etag) is None
    assert store.claim_content(digest, blob.name, blob.etag) is None
    with TwinInsideLookup(store, register) as twin:
        mine = register()
    assert mine.version == twin.twin_result.version == 1
    assert [d.version for d in store.list()] == [1]


def test_two_deliveries_of_one_upload_through_on_upload_make_one_version_and_one_request(env, small_bank_csv):
    data = small_bank_csv.read_bytes()
    blob = uploaded(env, "twice.csv", data)
    with TwinInsideLookup(env.stores.datasets, lambda: on_upload(blob, intake(env))) as inside:
        record = on_upload(blob, intake(env))
    twin = inside.twin_result
    assert [d.version for d in env.stores.datasets.list()] == [1]
    assert {record.outcome, twin.outcome} == {Outcome.QUEUED, Outcome.DUPLICATE}
    assert record.dataset_version == twin.dataset_version == 1
    requests = env.outbox.list()
    assert [(r.dataset_version, r.status) for r in requests] == [(1, "pending")]
    for r in (record, twin):  # no record left open
        assert not Outcome(env.stores.audit.get(r.id).outcome).is_open


class Killed(BaseException):
    """The host SIGKILLed mid-invocation: nothing after this point runs (not even `except Exception`)."""


class KilledAfterSave:
    """The audit log as a delivery the host kills right after it stored its record with `outcome` (default: the
    first write, `in_progress` at stage seen): the record is stored, then the invocation is gone."""

    def __init__(self, audit, outcome: str = Outcome.IN_PROGRESS):
        self._audit, self._outcome = audit, outcome

    def save(self, record) -> None:
        self._audit.save(record)
        if record.outcome == self._outcome:
            raise Killed

    def __getattr__(self, name):
        return getattr(self._audit, name)


def killed_delivery(env, blob: UploadedBlob, outcome: str = Outcome.IN_PROGRESS):
    """Run one delivery of `blob` that the host kills after its write with `outcome`; return its stored record."""
    base = intake(env)
    doomed = dataclasses.replace(base, retrain=dataclasses.replace(base.retrain,
                                                                   audit=KilledAfterSave(env.stores.audit, outcome)))
    with pytest.raises(Killed):
        on_upload(blob, doomed)
    (left,) = [r for r in env.stores.audit.list() if r.source == blob.name]
    assert left.outcome == outcome
    return left


# -- seeds 1 and 3 of the first campaigns, and the seeds 1, 2, 6: a killed delivery's record left open ----
def test_a_delivery_killed_after_its_first_write_is_closed_by_the_delivery_that_handles_the_upload(env,
                                                                                                  small_bank_csv):
    blob = uploaded(env, "killed.csv", small_bank_csv.read_bytes())
    left = killed_delivery(env, blob)
    handled = on_upload(blob, intake(env))  # the host runs the delivery again (its queue message reappeared)
    assert handled.outcome == Outcome.QUEUED and handled.dataset_version == 1
    closed = env.stores.audit.get(left.id)
    assert closed.outcome == Outcome.INTERRUPTED and handled.id in closed.detail
    assert [d.version for d in env.stores.datasets.list()] == [1]
    assert [(r.id, r.status) for r in env.outbox.list()] == [(handled.id, "pending")]


def test_a_later_delivery_still_running_is_not_closed(env, small_bank_csv):
    """Only records started before the handling delivery's are closed: a newer one is alive by construction."""
    blob = uploaded(env, "twice.csv", small_bank_csv.read_bytes())
    handled = on_upload(blob, intake(env))
    # a delivery that started after the next one below (its start an hour ahead) and is still running
    later = dataclasses.replace(env.stores.audit.get(handled.id), id="blob-9999999999999-later",
                                outcome="in_progress", started_at=handled.started_at + 3600, finished_at=None)
    env.stores.audit.save(later)
    again = on_upload(blob, intake(env))
    assert again.outcome == Outcome.DUPLICATE and again.started_at < later.started_at
    assert env.stores.audit.get(later.id).outcome == Outcome.IN_PROGRESS


# -- seeds 1, 2, 3 (v2): deliveries killed with the host were never run again (the local trigger queue was in memory;
# Azure's message reappears only after 10 minutes): the reconcile timer runs them again from the blob sooner ------
def test_an_upload_whose_delivery_was_killed_is_handled_again_by_the_reconcile_timer(env, small_bank_csv):
    blob = uploaded(env, "killed.csv", small_bank_csv.read_bytes())
    left = killed_delivery(env, blob)
    assert resume_interrupted_uploads(intake(env), older_than_s=30, now=left.started_at + 10) == 0  # too young
    assert resume_interrupted_uploads(intake(env), older_than_s=30, now=left.started_at + 31) == 1
    assert env.stores.audit.get(left.id).outcome == Outcome.INTERRUPTED
    (handled,) = [r for r in env.stores.audit.list() if r.source == blob.name and r.id != left.id]
    assert handled.outcome == Outcome.QUEUED and handled.dataset_version == 1
    assert [(r.id, r.dataset_version) for r in env.outbox.list()] == [(handled.id, 1)]
    assert resume_interrupted_uploads(intake(env), older_than_s=30, now=left.started_at + 3600) == 0  # done


def test_an_upload_killed_between_its_queued_record_and_its_request_gets_its_request(env, small_bank_csv):
    """Seed 3: `queued` records of v3 and v4 with no request in the outbox; the versions were registered."""
    blob = uploaded(env, "half.csv", small_bank_csv.read_bytes())
    left = killed_delivery(env, blob, Outcome.QUEUED)
    assert left.dataset_version == 1 and env.outbox.list() == []
    assert resume_interrupted_uploads(intake(env), older_than_s=30, now=left.started_at + 31) == 1
    assert env.stores.audit.get(left.id).outcome == Outcome.INTERRUPTED
    assert [d.version for d in env.stores.datasets.list()] == [1]  # the same version, not a second one
    (request,) = env.outbox.list()
    assert request.dataset_version == 1 and env.stores.audit.get(request.id).outcome == Outcome.QUEUED


def test_a_killed_delivery_whose_blob_is_gone_is_closed(env, small_bank_csv):
    blob = uploaded(env, "gone.csv", small_bank_csv.read_bytes())
    left = killed_delivery(env, blob)
    env.blobs.get_blob_client(env.incoming, "gone.csv").delete_blob()
    assert resume_interrupted_uploads(intake(env), older_than_s=30, now=left.started_at + 31) == 0
    closed = env.stores.audit.get(left.id)
    assert closed.outcome == Outcome.INTERRUPTED and "is gone" in closed.detail


# -- seed 1 (v2, durable trigger queue): an upload answered 202 whose delivery the host kill caught before its first
# write has no record at all; Azure runs it again only when its queue message is visible again (10 minutes) -------
def test_an_upload_without_any_record_is_handled_by_the_reconcile_sweep(env, small_bank_csv):
    blob = uploaded(env, "never-delivered.csv", small_bank_csv.read_bytes())
    assert handle_unrecorded_uploads(intake(env), older_than_s=30, now=blob.uploaded_at + 10) == 0  # too young
    assert env.stores.audit.list() == []
    assert handle_unrecorded_uploads(intake(env), older_than_s=30, now=blob.uploaded_at + 31) == 1
    (handled,) = env.stores.audit.list()
    assert (handled.source, handled.function, handled.outcome) == (blob.name, "reconcile_timer", Outcome.QUEUED)
    assert handled.data["etag"] == blob.etag and [r.id for r in env.outbox.list()] == [handled.id]
    assert handle_unrecorded_uploads(intake(env), older_than_s=30, now=blob.uploaded_at + 60) == 0  # recorded now


def test_the_sweep_leaves_recorded_uploads_and_takes_a_rewrite_without_a_record(env, small_bank_csv):
    data = small_bank_csv.read_bytes()
    first = uploaded(env, "rewritten.csv", data)
    on_upload(first, intake(env))  # delivered and recorded
    again = uploaded(env, "rewritten.csv", data.replace(b"\n", b"\r\n"))  # a new ETag whose event was lost
    assert again.etag != first.etag
    assert handle_unrecorded_uploads(intake(env), older_than_s=30, now=again.uploaded_at + 31) == 1
    records = sorted(env.stores.audit.list(), key=lambda r: r.started_at)
    assert [r.data["etag"] for r in records] == [first.etag, again.etag]
    assert records[1].outcome == Outcome.DUPLICATE  # the same rows: no second version
    assert [d.version for d in env.stores.datasets.list()] == [1]


def test_the_sweep_reads_no_blob_outside_its_window(env, small_bank_csv):
    blob = uploaded(env, "old.csv", small_bank_csv.read_bytes())
    assert handle_unrecorded_uploads(intake(env), older_than_s=30, lookback_s=3600,
                                     now=blob.uploaded_at + 3601) == 0  # older than the lookback: history, not lost
    assert env.stores.audit.list() == []


def test_a_blob_whose_name_storage_calls_must_not_use_is_refused_from_the_listing_without_reading_it(env):
    name = "a/../b.csv"
    assert put_raw(env.blobs, env.incoming, name, b"x,y\n1,2\n") == 201
    (blob,) = IncomingBlobs(env.blobs, env.incoming).listed(0)
    assert blob.name == f"{env.incoming}/{name}"
    assert handle_unrecorded_uploads(intake(env), older_than_s=0, now=blob.modified + 1) == 1
    (refused,) = env.stores.audit.list()
    assert refused.outcome == Outcome.REJECTED and refused.data["name_problem"] == "dot_segment"
    container, _, kept = refused.data["quarantined_to"].partition("/")
    assert env.blobs.get_blob_client(container, kept).download_blob().readall() == b""  # never read by that name
    assert handle_unrecorded_uploads(intake(env), older_than_s=0, now=blob.modified + 2) == 0
