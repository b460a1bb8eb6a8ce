"""How `retrain upload --wait` links an upload to its final record (tools/cli/upload_outcome.py), on the real audit,
runs and outbox tables in Azurite, for the paths the end-to-end tests do not reach: a request superseded by a newer
one, a delivery run again (an `interrupted` record, a twin `duplicate`), another write of the same blob name, a run
still in flight. The records are written as the services write them (the outbox's latest-wins through
shared.services.dispatch.enqueue)."""

from __future__ import annotations

import time
import uuid

import pytest

from shared.bootstrap import build_stores
from shared.domain.outcomes import Outcome, RunStatus
from shared.domain.records import AuditRecord, RunRecord, new_id
from shared.domain.retrain_request import RetrainRequest
from shared.services.dispatch import enqueue
from tests.isolation import isolated_settings
from tools.cli.upload_outcome import UploadRef, WaitTimedOut, wait_for_outcome


@pytest.fixture
def stores(azurite):
    """Tables of this test's own: the outbox's one pending slot is shared by whatever uses the table."""
    return build_stores(isolated_settings(azurite))


def upload(stores, ref: UploadRef, outcome: str, *, etag: str | None = None, run_id: str | None = None,
           detail: str = "") -> AuditRecord:
    record = AuditRecord(id=new_id("blob-"), trigger="blob", function="blob_upload", started_at=time.time(),
                         source=ref.source, data={"etag": ref.etag if etag is None else etag}, outcome=outcome,
                         run_id=run_id, detail=detail, dataset_version=1)
    stores.audit.save(record)
    return record


def run(stores, run_id: str, trigger_id: str, status: str) -> None:
    stores.runs.create(RunRecord(run_id=run_id, trigger_id=trigger_id, trigger="blob", reason="upload",
                                 dataset_version=1, experiment="e", submitted_at=time.time(), status=status))


def completion(stores, run_id: str, outcome: str, function: str = "run_completed") -> AuditRecord:
    record = AuditRecord(id=new_id("evt-"), trigger="eventgrid", function=function, started_at=time.time(),
                         run_id=run_id, outcome=outcome, model_version=2, finished_at=time.time())
    stores.audit.save(record)
    return record


def request(record: AuditRecord, uploaded_at: float) -> RetrainRequest:
    return RetrainRequest(id=record.id, trigger=record.trigger, reason="upload", dataset_version=1,
                          requested_at=uploaded_at, not_before=uploaded_at, deadline=uploaded_at + 3600,
                          uploaded_at=uploaded_at)


def ref() -> UploadRef:
    return UploadRef(f"incoming/{uuid.uuid4().hex[:8]}.csv", uuid.uuid4().hex, time.time())


def test_a_superseded_upload_ends_with_the_run_of_the_request_that_won(stores):
    mine = ref()
    first = upload(stores, mine, Outcome.QUEUED)
    newer = upload(stores, UploadRef("incoming/newer.csv", "e2", mine.since), Outcome.QUEUED)
    enqueue(request(first, 1.0), outbox=stores.outbox, audit=stores.audit)
    enqueue(request(newer, 2.0), outbox=stores.outbox, audit=stores.audit)  # latest wins: `first` is superseded
    assert stores.audit.get(first.id).outcome == Outcome.SUPERSEDED
    newer.outcome, newer.run_id = Outcome.SUBMITTED, "run-newer"
    stores.audit.save(newer)
    run(stores, "run-newer", newer.id, RunStatus.KEPT_CHAMPION)
    done = completion(stores, "run-newer", Outcome.KEPT_CHAMPION, function="reconcile_timer")

    final = wait_for_outcome(stores, mine, timeout_s=10, poll_s=0.05)
    assert final.record.id == done.id and final.ok and final.superseded_by == [newer.id]
    assert final.to_dict()["upload_id"] == first.id and final.to_dict()["final_outcome"] == "kept_champion"


def test_the_delivery_that_carried_the_upload_on_is_followed(stores):
    mine = ref()
    upload(stores, mine, Outcome.INTERRUPTED)  # a killed delivery, closed by the one run again
    again = upload(stores, mine, Outcome.REJECTED, detail="rejected: missing columns: age")
    final = wait_for_outcome(stores, mine, timeout_s=10, poll_s=0.05)
    assert final.record.id == again.id and not final.ok

    twin = ref()
    queued = upload(stores, twin, Outcome.SUBMITTED, run_id="run-twin")
    upload(stores, twin, Outcome.DUPLICATE, detail="v1 was already registered and queued for this blob")
    run(stores, "run-twin", queued.id, RunStatus.ROLLED_BACK)
    completion(stores, "run-twin", Outcome.DUPLICATE)  # a second event for the run: not its completion
    done = completion(stores, "run-twin", Outcome.ROLLED_BACK)
    final = wait_for_outcome(stores, twin, timeout_s=10, poll_s=0.05)
    assert final.record.id == done.id and final.upload.id == queued.id and not final.ok


def test_another_write_of_the_name_or_a_run_in_flight_is_no_final_outcome(stores):
    mine = ref()
    upload(stores, mine, Outcome.DUPLICATE, etag="an-earlier-write")
    with pytest.raises(WaitTimedOut, match="no audit record for"):
        wait_for_outcome(stores, mine, timeout_s=0.3, poll_s=0.05)

    submitted = upload(stores, mine, Outcome.SUBMITTED, run_id="run-busy")
    run(stores, "run-busy", submitted.id, RunStatus.HANDLING)
    with pytest.raises(WaitTimedOut, match=f"blob record {submitted.id} is submitted, run run-busy"):
        wait_for_outcome(stores, mine, timeout_s=0.3, poll_s=0.05)

    ended = stores.runs.get("run-busy")
    ended.status = RunStatus.DEPLOYED
    stores.runs.save(ended)
    completion(stores, "run-busy", Outcome.DEPLOYED, function="promote")  # a deploy by hand is not its completion
    with pytest.raises(WaitTimedOut):
        wait_for_outcome(stores, mine, timeout_s=0.3, poll_s=0.05)
    done = completion(stores, "run-busy", Outcome.DEPLOYED)
    assert wait_for_outcome(stores, mine, timeout_s=10, poll_s=0.05).record.id == done.id
