"""The outbox and its dispatcher on real Azurite (entity group transactions, ETags) with a pipeline endpoint on
loopback that fails the way real ones do and does not deduplicate: latest wins, single flight, retries with backoff,
crash recovery, and a lookup of the request's run before every resubmission."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from werkzeug import Response

from shared.adapters.credentials import StaticTokenCredential
from shared.adapters.pipeline_client import PublishedPipelineClient
from shared.domain.records import AuditRecord
from shared.domain.retrain_request import RetrainRequest
from shared.services.dispatch import DispatchPolicy, RetrainDispatch, backoff, dispatch, enqueue, new_request, retry
from shared.services.retrain import PipelineTarget
from tests.isolation import outbox_env

RUNS = "/pipelines/v1.0/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/" \
       "workspaces/w/PipelineRuns"
SUBMIT = f"{RUNS}/PipelineSubmit/p1"
LIST = f"{RUNS}/Pipeline/p1"  # the v1 lookup: the pipeline's runs
TARGET = PipelineTarget(experiment="exp", datastore="workspaceblobstore", data_input="training_data", budget_s=5)
POLICY = DispatchPolicy(coalesce_s=10, deadline_s=600, backoff_s=5, max_backoff_s=60, lease_s=120)
T0 = 1_800_000_000.0


@pytest.fixture
def env(azurite, httpserver, small_bank_csv):
    env = outbox_env(azurite, small_bank_csv.read_bytes(), versions=3)
    pipeline = PublishedPipelineClient(httpserver.url_for(SUBMIT), StaticTokenCredential("t"), max_retries=0)
    httpserver.expect_request(LIST, method="GET").respond_with_handler(lambda request: _runs_started(httpserver))
    env.pipeline = pipeline
    return env


def _runs_started(httpserver) -> Response:
    """The runs this server started: every POST it answered with a run (it never deduplicates)."""
    runs = [{"Id": answer.get_json()["Id"], "ParameterAssignments": sent.get_json()["ParameterAssignments"],
             "Status": {"StatusCode": "NotStarted"}}
            for sent, answer in httpserver.log if sent.method == "POST" and answer.status_code == 200]
    return Response(json.dumps(runs), 200, content_type="application/json")


def posts(httpserver) -> list:
    return [sent for sent, _ in httpserver.log if sent.method == "POST"]


def request(env, version: int, *, coalesce=True, at=T0, trigger="blob") -> RetrainRequest:
    record = AuditRecord(id=f"{trigger}-{uuid.uuid4().hex[:8]}", trigger=trigger, function="blob_upload",
                         started_at=at, outcome="queued")
    env.stores.audit.save(record)
    return new_request(record, dataset_version=version, reason="upload", policy=POLICY, coalesce=coalesce, now=at)


def retrain(env, pipeline=None) -> RetrainDispatch:
    return RetrainDispatch(outbox=env.outbox, runs=env.stores.runs, pipeline=pipeline or env.pipeline,
                           datasets=env.stores.datasets, audit=env.stores.audit, models=env.stores.models,
                           target=TARGET, policy=POLICY)


def run_dispatch(env, now):
    return dispatch(retrain(env), now=now)


def finish_run(env, run_id):
    run = env.stores.runs.get(run_id)
    run.status = "Deployed"
    env.stores.runs.save(run)


def test_a_burst_coalesces_into_one_submission_of_the_newest_version(env, httpserver):
    first, second, third = (request(env, v.version, at=T0 + i) for i, v in enumerate(env.versions))
    for r in (first, second, third):
        enqueue(r, outbox=env.outbox, audit=env.stores.audit)
    assert run_dispatch(env, T0 + 5) == "nothing due"  # within the window after the last upload
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_json({"Id": "run-newest"})
    assert run_dispatch(env, T0 + 12).startswith("submitted run-newest")
    (sent,) = posts(httpserver)
    assert sent.get_json()["ParameterAssignments"]["dataset_version"] == str(env.versions[2].version)
    assert sent.get_json()["ParameterAssignments"]["trigger_id"] == third.id
    for old, by in ((first, second), (second, third)):  # each by the next one, within the window
        assert env.outbox.get(old.id).status == "superseded" and env.outbox.get(old.id).superseded_by == by.id
        audit = env.stores.audit.get(old.id)
        assert audit.outcome == "superseded" and f"superseded by v{by.dataset_version}" in audit.detail
    assert env.stores.audit.get(third.id).outcome == "submitted"
    assert env.outbox.get(third.id).run_id == "run-newest"


def test_single_flight_queues_one_pending_request_latest_wins(env, httpserver):
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_json({"Id": "run-1"})
    enqueue(request(env, 1, coalesce=False), outbox=env.outbox, audit=env.stores.audit)
    assert run_dispatch(env, T0).startswith("submitted run-1")
    waiting = [request(env, v, coalesce=False, at=T0 + v) for v in (2, 3)]
    for r in waiting:
        enqueue(r, outbox=env.outbox, audit=env.stores.audit)
    assert run_dispatch(env, T0 + 60) == "busy: a run is in flight"
    assert env.outbox.pending().id == waiting[1].id and env.outbox.get(waiting[0].id).status == "superseded"
    finish_run(env, "run-1")
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_json({"Id": "run-3"})
    assert run_dispatch(env, T0 + 61).startswith("submitted run-3")
    assert run_dispatch(env, T0 + 62) == "busy: a run is in flight"
    assert len(posts(httpserver)) == 2


def test_429_and_5xx_are_retried_with_backoff_honouring_retry_after_then_submitted(env, httpserver):
    r = request(env, 1, coalesce=False)
    enqueue(r, outbox=env.outbox, audit=env.stores.audit)
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "42"})
    assert run_dispatch(env, T0) == "retry in 42 s"
    stored = env.outbox.get(r.id)
    assert stored.status == "pending" and stored.next_attempt_at == pytest.approx(T0 + 42)
    assert "429" in stored.last_error and "retrying in 42 s" in env.stores.audit.get(r.id).detail
    assert run_dispatch(env, T0 + 30) == "nothing due"
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_data("down", status=503)
    assert run_dispatch(env, T0 + 43).startswith("retry in")
    second = env.outbox.get(r.id)
    assert 5 <= second.next_attempt_at - (T0 + 43) <= 10  # attempt 2: 5 s doubled, jittered in its upper half
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_json({"Id": "run-ok"})
    assert run_dispatch(env, T0 + 60).startswith("submitted run-ok")
    record = env.stores.audit.get(r.id)
    assert record.outcome == "submitted" and "after 3 attempts" in record.detail


def test_an_unreachable_endpoint_fails_the_request_at_its_deadline_and_retry_by_hand_resubmits(env, httpserver):
    dead = PublishedPipelineClient("http://127.0.0.1:9" + SUBMIT, StaticTokenCredential("t"), max_retries=0)
    r = request(env, 1, coalesce=False)
    enqueue(r, outbox=env.outbox, audit=env.stores.audit)
    assert dispatch(retrain(env, dead), now=T0).startswith("retry in")
    assert dispatch(retrain(env, dead), now=T0 + POLICY.deadline_s + 1) == "failed"
    failed = env.stores.audit.get(r.id)
    assert failed.outcome == "failed" and f"retrain retry {r.id}" in failed.detail and "cannot connect" in \
        failed.detail
    assert env.outbox.get(r.id).status == "failed"
    retry(r.id, outbox=env.outbox, audit=env.stores.audit, policy=POLICY, now=T0 + 700)
    assert env.outbox.get(r.id).status == "pending" and env.outbox.get(r.id).deadline == T0 + 700 + 600
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_json({"Id": "run-retried"})
    assert run_dispatch(env, T0 + 701).startswith("submitted run-retried")
    with pytest.raises(ValueError, match="is submitted, not failed"):
        retry(r.id, outbox=env.outbox, audit=env.stores.audit, policy=POLICY)


def test_a_4xx_refusal_is_not_retried(env, httpserver):
    r = request(env, 1, coalesce=False)
    enqueue(r, outbox=env.outbox, audit=env.stores.audit)
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_json(
        {"error": {"code": "UserError", "message": "bad parameter"}}, status=400)
    assert run_dispatch(env, T0) == "failed"
    assert "not retryable" in env.stores.audit.get(r.id).detail


def test_a_claim_abandoned_by_a_dead_instance_is_looked_up_then_submitted(env, httpserver):
    r = request(env, 1, coalesce=False)
    enqueue(r, outbox=env.outbox, audit=env.stores.audit)
    claimed = env.outbox.claim(T0)  # an instance claimed it, then died before submitting
    assert claimed.status == "submitting"
    assert run_dispatch(env, T0 + 60) == "busy: another instance is submitting"  # within the lease
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_json({"Id": "run-after-crash"})
    assert run_dispatch(env, T0 + 121).startswith("submitted run-after-crash")
    assert [(sent.method, sent.path) for sent, _ in httpserver.log] == [("GET", LIST), ("POST", SUBMIT)]
    assert posts(httpserver)[0].get_json()["ParameterAssignments"]["trigger_id"] == r.id


def test_concurrent_dispatchers_submit_once(env, httpserver):
    httpserver.expect_request(SUBMIT, method="POST").respond_with_json({"Id": "run-once"})
    enqueue(request(env, 1, coalesce=False), outbox=env.outbox, audit=env.stores.audit)
    results = []
    threads = [threading.Thread(target=lambda: results.append(run_dispatch(env, T0))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.startswith("submitted") for r in results) == 1 and len(posts(httpserver)) == 1


def test_concurrent_enqueues_leave_exactly_one_pending(env):
    made = [request(env, 1 + i % 3, at=T0 + i) for i in range(8)]
    threads = [threading.Thread(target=enqueue, args=(r,), kwargs={"outbox": env.outbox, "audit": env.stores.audit})
               for r in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [env.outbox.get(r.id).status for r in made]
    assert statuses.count("pending") == 1 and statuses.count("superseded") == 7
    assert env.outbox.pending().status == "pending"


def test_backoff_grows_is_capped_and_respects_retry_after():
    low = [backoff(n, None, POLICY, rand=lambda: 0.0) for n in range(1, 8)]
    high = [backoff(n, None, POLICY, rand=lambda: 1.0) for n in range(1, 8)]
    assert low == [2.5, 5, 10, 20, 30, 30, 30] and high == [5, 10, 20, 40, 60, 60, 60]
    assert backoff(1, 90, POLICY, rand=lambda: 0.5) == 90


def test_an_attempt_that_may_have_started_a_run_is_confirmed_before_a_newer_request_goes(env, httpserver):
    """No answer (or a 5xx) may still mean a run: that request is never superseded; it goes first (looked up, then
    submitted as no run was found), and the newer one waits for single flight."""
    older = request(env, 1, coalesce=False)
    enqueue(older, outbox=env.outbox, audit=env.stores.audit)
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_data("gateway", status=502)
    assert run_dispatch(env, T0).startswith("retry in")
    newer = request(env, 2, coalesce=False, at=T0 + 1)
    enqueue(newer, outbox=env.outbox, audit=env.stores.audit)
    assert env.outbox.get(older.id).status == "unconfirmed"  # not superseded by the newer one
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_json({"Id": "run-older"})
    assert run_dispatch(env, T0 + 60).startswith("submitted run-older")
    assert [r.get_json()["ParameterAssignments"]["trigger_id"] for r in posts(httpserver)] == [older.id, older.id]
    assert [sent.method for sent, _ in httpserver.log] == ["POST", "GET", "POST"]
    assert env.outbox.get(newer.id).status == "pending"  # single flight: after the older run
    assert run_dispatch(env, T0 + 61) == "busy: a run is in flight"


def test_requests_handled_out_of_order_still_train_the_newest_data(env):
    newest = request(env, 2, at=T0 + 10)
    older = request(env, 1, at=T0)  # uploaded first, but its trigger ran second
    newest.uploaded_at, older.uploaded_at = T0 + 10, T0
    enqueue(newest, outbox=env.outbox, audit=env.stores.audit)
    enqueue(older, outbox=env.outbox, audit=env.stores.audit)
    assert env.outbox.pending().id == newest.id
    assert env.outbox.get(older.id).status == "superseded" and env.outbox.get(older.id).superseded_by == newest.id
    audit = env.stores.audit.get(older.id)
    assert audit.outcome == "superseded" and "superseded by v2" in audit.detail


def test_records_left_in_progress_by_a_killed_host_are_closed_as_interrupted(env):
    from shared.services.reconcile import close_interrupted

    stuck = AuditRecord(id=f"blob-{uuid.uuid4().hex[:8]}", trigger="blob", function="blob_upload", started_at=T0)
    stuck.stage("seen", T0)
    recent = AuditRecord(id=f"blob-{uuid.uuid4().hex[:8]}", trigger="blob", function="blob_upload",
                         started_at=T0 + 800)
    for record in (stuck, recent):
        env.stores.audit.save(record)
    orphan = AuditRecord(id=f"blob-{uuid.uuid4().hex[:8]}", trigger="blob", function="blob_upload", started_at=T0,
                         outcome="queued")  # killed between the audit write and the outbox write
    waiting = request(env, 1, at=T0)  # queued with its request in the outbox: the dispatcher ends it
    enqueue(waiting, outbox=env.outbox, audit=env.stores.audit)
    env.stores.audit.save(orphan)
    assert close_interrupted(audit=env.stores.audit, outbox=env.outbox, now=T0 + 901) == 2
    assert env.stores.audit.get(orphan.id).outcome == "interrupted"
    assert env.stores.audit.get(waiting.id).outcome == "queued"
    closed = env.stores.audit.get(stuck.id)
    assert closed.outcome == "interrupted" and "after seen" in closed.detail and closed.finished_at
    assert env.stores.audit.get(recent.id).outcome == "in_progress"
    assert close_interrupted(audit=env.stores.audit, outbox=env.outbox, now=T0 + 902) == 0
