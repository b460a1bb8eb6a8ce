"""The fault campaign's verdict (bench/fault_count.py): `ok` is false for every kind of problem the bench detects.

One small campaign outcome that is clean, then one defect per problem kind; the last test fails when a kind is
added to `ProblemKind` without a case here, so the verdict cannot silently ignore a new check."""

from __future__ import annotations

import dataclasses

import pytest

from bench.fault_count import ProblemKind, Snapshot, count
from bench.fault_endpoint import EndpointRun
from bench.fault_plan import Upload
from bench.fault_proxy import ProxyEvent
from shared.domain.records import AuditRecord, DatasetVersion, ModelVersion, RunRecord
from shared.domain.retrain_request import RetrainRequest

T0 = 1_000_000.0


def _dataset(version: int, digest: str) -> DatasetVersion:
    return DatasetVersion(name="bankmarketing", version=version, container="datasets",
                          path=f"bankmarketing/v{version}/data.csv", content_hash=f"sha256:{digest * 64}", rows=700,
                          columns=21, source_blob=f"incoming/u{version - 1}.csv", source_etag="e", dialect="comma",
                          registered_at=T0 + version)


def _request(rid: str, version: int, **kw) -> RetrainRequest:
    return RetrainRequest(id=rid, trigger="blob", reason="upload", dataset_version=version,
                          requested_at=T0 + version, not_before=T0 + version, deadline=T0 + 900, **kw)


def clean() -> tuple[list[Upload], Snapshot, list[ProxyEvent]]:
    """Two uploads: the first superseded by the second, which ran once and completed once."""
    uploads = [Upload(index=i, burst=0, name=f"u{i}.csv", kind="unique", content=i, data=b"") for i in range(2)]
    audit = [
        AuditRecord(id="r0", trigger="blob", function="blob_upload", started_at=T0, outcome="superseded",
                    source="incoming/u0.csv", dataset_version=1),
        AuditRecord(id="r1", trigger="blob", function="blob_upload", started_at=T0 + 1, outcome="submitted",
                    source="incoming/u1.csv", dataset_version=2),
        AuditRecord(id="e1", trigger="eventgrid", function="run_completed", started_at=T0 + 9, outcome="deployed",
                    run_id="retrain-r1"),
    ]
    requests = [_request("r0", 1, status="superseded", superseded_by="r1"),
                _request("r1", 2, status="submitted", run_id="retrain-r1", attempts=1)]
    runs = [RunRecord(run_id="retrain-r1", trigger_id="r1", trigger="blob", reason="upload", dataset_version=2,
                      experiment="x", submitted_at=T0 + 5, status="Deployed")]
    endpoint = [EndpointRun(run_id="retrain-r1", trigger_id="r1", dataset_version="2", status="Completed",
                            experiment="x", created="2026-12-07T07:00:05Z", ended="2026-12-07T07:00:09Z")]
    datasets = [_dataset(1, "a"), _dataset(2, "b")]
    models = [ModelVersion(version=1, run_id="retrain-r1", dataset_version=2, model_dir="/m", metrics={},
                           registered_at=T0 + 10)]
    proxy = [ProxyEvent(at=T0 + 5, index=0, method="POST", path="/jobs", kind="forward", trigger_id="r1",
                        upstream_status=200, run_id="retrain-r1")]
    return uploads, Snapshot(audit=audit, requests=requests, runs=runs, endpoint=endpoint, datasets=datasets,
                             models=models), proxy


def verdict(uploads, snap, proxy, *, host_alive=True, quiet=True, notes=()) -> dict:
    return count(uploads, snap, proxy, t0=T0, host_alive=host_alive, quiet=quiet,
                 not_quiet_because=[] if quiet else ["outbox: {'pending': 1}"], notes=list(notes))


def _second_run(snap: Snapshot, **kw) -> None:
    base = dict(run_id="retrain-r1-again", trigger_id="r1", dataset_version="2", status="Completed", experiment="x",
                created="2026-12-07T07:00:10Z", ended="2026-12-07T07:00:14Z")
    snap.endpoint.append(EndpointRun(**{**base, **kw}))


def _lost_upload(u, snap, proxy):
    snap.audit[1].outcome = "in_progress"
    return {}


def _doubled(u, snap, proxy):
    _second_run(snap)
    snap.runs.append(dataclasses.replace(snap.runs[0], run_id="retrain-r1-again"))
    snap.requests.append(_request("r9", 3, status="submitted", run_id="retrain-r1-again"))
    return {}


def _untracked(u, snap, proxy):
    _second_run(snap, run_id="orphan", trigger_id="r0", dataset_version="1")
    return {}


def _dangling(u, snap, proxy):
    snap.audit.append(AuditRecord(id="r1b", trigger="blob", function="blob_upload", started_at=T0 + 2,
                                  outcome="in_progress", source="incoming/u1.csv"))
    return {}


def _unexpected(u, snap, proxy):
    snap.audit[0].outcome = "rejected"
    snap.requests[0].status = "failed"  # keep audit and outbox agreeing: only the outcome is wrong
    snap.requests[0].last_error = "x"
    return {}


def _disagree(u, snap, proxy):
    snap.audit[1].outcome = "failed"
    return {}


def _latest(u, snap, proxy):
    snap.requests.append(_request("r2", 3, status="superseded", superseded_by="r1"))
    return {}


def _retry_after(u, snap, proxy):
    proxy.insert(0, ProxyEvent(at=T0 + 3, index=0, method="POST", path="/jobs", kind="http_429", trigger_id="r1",
                               retry_after_s=3))
    proxy[1].at = T0 + 4  # the next try 1 s after a Retry-After of 3 s
    return {}


def _single_flight(u, snap, proxy):
    snap.endpoint[0] = dataclasses.replace(snap.endpoint[0], ended="2026-12-07T07:00:30Z")
    _second_run(snap, run_id="other", trigger_id="r0", dataset_version="1")
    snap.runs.append(dataclasses.replace(snap.runs[0], run_id="other", trigger_id="r0", dataset_version=1))
    snap.requests[0].status, snap.requests[0].run_id, snap.requests[0].superseded_by = "submitted", "other", None
    snap.audit[0].outcome = "submitted"
    return {}


def _submissions(u, snap, proxy):
    snap.requests[0].status, snap.requests[0].run_id, snap.requests[0].superseded_by = "submitted", "retrain-r1", None
    snap.audit[0].outcome = "submitted"
    return {}


def _storage(u, snap, proxy):
    return {"notes": ["Azurite restart lost audit records: 21 before, 19 after"]}


DEFECTS = {
    ProblemKind.LOST: _lost_upload,
    ProblemKind.DOUBLED: _doubled,
    ProblemKind.UNTRACKED: _untracked,
    ProblemKind.DANGLING: _dangling,
    ProblemKind.UNEXPECTED_OUTCOME: _unexpected,
    ProblemKind.DISAGREE: _disagree,
    ProblemKind.LATEST_NOT_TRAINED: _latest,
    ProblemKind.RETRY_AFTER: _retry_after,
    ProblemKind.SINGLE_FLIGHT: _single_flight,
    ProblemKind.SUBMISSIONS: _submissions,
    ProblemKind.STORAGE_LOSS: _storage,
    ProblemKind.NOT_QUIET: lambda u, s, p: {"quiet": False},
    ProblemKind.HOST_DEAD: lambda u, s, p: {"host_alive": False},
}


def test_a_clean_campaign_is_ok_with_no_problem():
    result = verdict(*clean())
    assert result["problems"] == []
    assert result["ok"] is True
    assert (result["lost"], result["duplicated"], result["untracked_runs"], result["dangling_records"]) == (0, 0, 0, 0)
    assert result["submissions"] == result["requests_submitted"] == 1
    assert result["endpoint_overlaps"] == 0


@pytest.mark.parametrize("kind", list(DEFECTS), ids=lambda k: k.value)
def test_every_problem_kind_makes_the_campaign_not_ok(kind):
    uploads, snap, proxy = clean()
    options = DEFECTS[kind](uploads, snap, proxy)
    result = verdict(uploads, snap, proxy, **options)
    assert kind.value in result["problem_kinds"], result["problems"]
    assert result["ok"] is False


def test_every_problem_kind_has_a_case_here():
    assert set(DEFECTS) == set(ProblemKind)


def test_figures_count_their_problems():
    uploads, snap, proxy = clean()
    _untracked(uploads, snap, proxy)
    _dangling(uploads, snap, proxy)
    result = verdict(uploads, snap, proxy)
    assert (result["untracked_runs"], result["dangling_records"]) == (1, 1)
    assert result["problem_kinds"] == {"dangling": 1, "submissions_differ": 1, "untracked": 1}


def test_latest_wins_is_judged_by_upload_time_not_by_version_number():
    """Two uploads of one burst: the later upload got the lower number (its trigger ran first) and won."""
    uploads, snap, proxy = clean()
    snap.requests[0].uploaded_at, snap.requests[1].uploaded_at = T0 + 1.5, T0 + 1.2
    snap.requests[0].status, snap.requests[0].superseded_by = "submitted", None
    snap.requests[0].run_id = "retrain-r1"
    snap.requests[1].status, snap.requests[1].superseded_by, snap.requests[1].run_id = "superseded", "r0", None
    snap.audit[0].outcome, snap.audit[1].outcome = "submitted", "superseded"
    snap.runs[0].trigger_id = "r0"
    snap.endpoint[0] = dataclasses.replace(snap.endpoint[0], trigger_id="r0", dataset_version="1")
    result = verdict(uploads, snap, proxy)
    assert result["problems"] == [] and result["ok"] is True
    snap.requests[0].uploaded_at = T0 + 1.1  # now the trained one is the older upload
    assert ProblemKind.LATEST_NOT_TRAINED.value in verdict(uploads, snap, proxy)["problem_kinds"]


def test_uploads_of_the_same_second_tie_and_either_may_win():
    """Blob Last-Modified has one-second resolution: seed 1 (v2) saw v10 superseded by v9, both uploaded at
    1796626494.0."""
    uploads, snap, proxy = clean()
    snap.requests[0].uploaded_at = snap.requests[1].uploaded_at = T0 + 1
    assert verdict(uploads, snap, proxy)["ok"] is True  # r1 (v2) trained; r0 (v1) tied, superseded
    snap.requests[0].dataset_version, snap.requests[1].dataset_version = 2, 1  # the lower number won the tie
    assert ProblemKind.LATEST_NOT_TRAINED.value not in verdict(uploads, snap, proxy)["problem_kinds"]


def test_a_killed_delivery_closed_interrupted_beside_the_handling_one_is_not_dangling():
    uploads, snap, proxy = clean()
    _dangling(uploads, snap, proxy)
    snap.audit[-1].outcome = "interrupted"
    result = verdict(uploads, snap, proxy)
    assert result["dangling_records"] == 0 and result["ok"] is True
    snap.audit[1].outcome = "interrupted"  # but an upload whose only delivery was interrupted is lost
    snap.requests[1].status = "failed"
    assert ProblemKind.LOST.value in verdict(uploads, snap, proxy)["problem_kinds"]


def test_single_flight_is_not_measured_without_end_times():
    uploads, snap, proxy = clean()
    snap.endpoint[0] = dataclasses.replace(snap.endpoint[0], ended=None)
    result = verdict(uploads, snap, proxy)
    assert result["endpoint_overlaps"] is None
    assert result["ok"] is True
