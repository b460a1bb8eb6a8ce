"""Exactly one run per request, against pipeline services that do not deduplicate (tests/fake_azureml.py, v2 batch
endpoint and v1 published pipeline), with the outbox on real Azurite: a lost answer, a failed lookup and a dead
instance's stale claim each end with one run, recorded once, and never a second POST."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest
from werkzeug import Response

from local.processes import free_port
from shared.adapters.credentials import StaticTokenCredential
from shared.adapters.pipeline_client import BatchEndpointPipelineClient, PublishedPipelineClient
from shared.domain.records import AuditRecord
from shared.domain.retrain_request import RetrainRequest
from shared.services.dispatch import DispatchPolicy, RetrainDispatch, dispatch, enqueue, new_request
from shared.services.retrain import PipelineTarget, request_retrain
from tests.fake_azureml import SECRET, WORKSPACE, BatchWorkspace, PublishedPipeline, error
from tests.isolation import outbox_env

TARGET = PipelineTarget(experiment="exp", datastore="workspaceblobstore", data_input="training_data", budget_s=5)
POLICY = DispatchPolicy(coalesce_s=10, deadline_s=600, backoff_s=5, max_backoff_s=60, lease_s=120)
T0 = 1_800_000_000.0
TIMEOUT_S = 2.0  # the client's answer timeout: a stalled create outlives it


def v2_client(server: BatchWorkspace, arm_url: str | None = None) -> BatchEndpointPipelineClient:
    return BatchEndpointPipelineClient(server.invocation_url, StaticTokenCredential(SECRET), workspace_id=WORKSPACE,
                                       arm_url=arm_url or server.arm_url, max_retries=0, timeout_s=TIMEOUT_S)


@pytest.fixture(params=["batch-endpoint", "published"])
def service(request, httpserver):
    if request.param == "batch-endpoint":
        server = BatchWorkspace(httpserver)
        client = v2_client(server)
    else:
        server = PublishedPipeline(httpserver)
        client = PublishedPipelineClient(server.submit_url, StaticTokenCredential(SECRET), max_retries=0,
                                         timeout_s=TIMEOUT_S)
    yield SimpleNamespace(kind=request.param, server=server, client=client)
    server.stall.release()  # never leave the shared server blocked


@pytest.fixture
def env(azurite, small_bank_csv):
    return outbox_env(azurite, small_bank_csv.read_bytes(), versions=2)


def retrain(env, pipeline) -> RetrainDispatch:
    return RetrainDispatch(outbox=env.outbox, runs=env.stores.runs, pipeline=pipeline, datasets=env.stores.datasets,
                           audit=env.stores.audit, models=env.stores.models, target=TARGET, policy=POLICY)


def queued(env, version: int, at: float = T0) -> RetrainRequest:
    record = AuditRecord(id=f"blob-{uuid.uuid4().hex[:8]}", trigger="blob", function="blob_upload", started_at=at,
                         outcome="queued")
    env.stores.audit.save(record)
    request = new_request(record, dataset_version=version, reason="upload", policy=POLICY, now=at)
    enqueue(request, outbox=env.outbox, audit=env.stores.audit)
    return request


def lose_the_answer(env, service, now: float = T0) -> str:
    """One dispatch whose create succeeds on the server while the client stops waiting."""
    service.server.stall.arm()
    try:
        return dispatch(retrain(env, service.client), now=now)
    finally:
        service.server.stall.release()


def assert_recorded_once(env, service, request: RetrainRequest) -> str:
    stored = env.outbox.get(request.id)
    assert stored.status == "submitted" and stored.run_id
    assert service.server.invokes == 1  # one POST ever: the retry looked the run up instead
    run = env.stores.runs.get(stored.run_id)
    assert run is not None and run.trigger_id == request.id
    assert [r.run_id for r in env.stores.runs.list() if r.trigger_id == request.id] == [stored.run_id]
    record = env.stores.audit.get(request.id)
    assert record.outcome == "submitted" and record.run_id == stored.run_id
    return record.detail


def test_a_lost_answer_is_found_by_the_retry_and_never_posted_twice(env, service):
    request = queued(env, env.versions[0].version)
    assert lose_the_answer(env, service).startswith("retry in")
    assert service.server.invokes == 1  # the run exists on the server
    assert env.outbox.get(request.id).status == "unconfirmed"
    assert "looking up the run it may have started first" in env.stores.audit.get(request.id).detail
    outcome = dispatch(retrain(env, service.client), now=T0 + 60)
    assert outcome.endswith("(found: started by an earlier attempt)"), outcome
    detail = assert_recorded_once(env, service, request)
    assert "started by an earlier attempt was found, not submitted again" in detail
    if service.kind == "batch-endpoint":
        assert env.outbox.get(request.id).run_id == f"retrain-{request.id}"
    assert dispatch(retrain(env, service.client), now=T0 + 61) == "busy: a run is in flight"


def test_a_failed_lookup_keeps_the_request_unconfirmed_and_posts_nothing(env, service):
    older = queued(env, env.versions[0].version)
    lose_the_answer(env, service)
    service.server.lookup_failures[:] = [error(503, "ServiceUnavailable", "try later")] * 2
    assert dispatch(retrain(env, service.client), now=T0 + 60).startswith("lookup failed; retry in")
    assert env.outbox.get(older.id).status == "unconfirmed" and service.server.invokes == 1
    assert "not submitted again until a lookup answers" in env.stores.audit.get(older.id).detail
    newer = queued(env, env.versions[1].version, at=T0 + 61)  # a newer upload does not supersede it
    past_deadline = T0 + POLICY.deadline_s + 100  # nor does its deadline fail it: the run may exist
    assert dispatch(retrain(env, service.client), now=past_deadline).startswith("lookup failed")
    assert env.outbox.get(older.id).status == "unconfirmed" and env.outbox.get(newer.id).status == "pending"
    assert dispatch(retrain(env, service.client), now=past_deadline + 120).endswith("earlier attempt)")
    assert_recorded_once(env, service, older)
    assert dispatch(retrain(env, service.client), now=past_deadline + 121) == "busy: a run is in flight"


def test_an_unreachable_lookup_keeps_the_request_unconfirmed(env, httpserver):
    server = BatchWorkspace(httpserver)
    service = SimpleNamespace(kind="batch-endpoint", server=server, client=v2_client(server))
    try:
        request = queued(env, env.versions[0].version)
        lose_the_answer(env, service)
        arm_down = v2_client(server, arm_url=f"http://127.0.0.1:{free_port()}")
        assert dispatch(retrain(env, arm_down), now=T0 + 60).startswith("lookup failed")
        assert env.outbox.get(request.id).status == "unconfirmed" and server.invokes == 1
        assert "cannot connect" in env.stores.audit.get(request.id).detail
    finally:
        server.stall.release()


@pytest.mark.parametrize("died_after", ["the POST", "recording the run"])
def test_a_stale_claim_is_looked_up_and_the_dead_instances_run_recorded_once(env, service, died_after):
    request = queued(env, env.versions[0].version)
    claimed = env.outbox.claim(T0)  # an instance claimed it ...
    if died_after == "the POST":  # ... posted (the run exists) and died before recording anything
        service.client.submit(experiment=TARGET.experiment, parameters={"trigger_id": request.id})
    else:  # ... posted, recorded the run, and died before ending the request
        record = env.stores.audit.get(request.id)
        request_retrain(env.stores.datasets.get(claimed.dataset_version), reason="upload", record=record,
                        retrain=retrain(env, service.client))
    assert dispatch(retrain(env, service.client), now=T0 + 60) == "busy: another instance is submitting"
    assert dispatch(retrain(env, service.client), now=T0 + 121).endswith("(found: started by an earlier attempt)")
    assert_recorded_once(env, service, request)


def test_a_stale_claim_whose_instance_died_before_posting_is_submitted_once(env, service):
    request = queued(env, env.versions[0].version)
    env.outbox.claim(T0)
    assert dispatch(retrain(env, service.client), now=T0 + 121).startswith("submitted")
    assert "found" not in env.stores.audit.get(request.id).detail
    assert_recorded_once(env, service, request)


def test_a_v1_pipeline_endpoint_without_a_lookup_still_retries_a_throttled_request(env, httpserver):
    """`…/PipelineEndpointSubmit/Id/{id}` offers no run listing (RunLookupUnavailable): a request that was only
    throttled (nothing started) is submitted again as before; one whose answer was lost is submitted again too, its
    audit record saying a second run is possible, rather than held forever."""
    from tests.fake_azureml import PIPELINE_ID, V1_RUNS

    posts: list[dict] = []
    answers = [error(429, "TooManyRequests", "slow down")]

    def submit(request):
        if answers:
            return answers.pop(0)
        posts.append(request.get_json())
        return Response(json.dumps({"Id": f"run-{len(posts)}", "Status": {"StatusCode": "NotStarted"}}),
                        status=200, content_type="application/json")

    path = f"{V1_RUNS}/PipelineEndpointSubmit/Id/{PIPELINE_ID}"
    httpserver.expect_request(path, method="POST").respond_with_handler(submit)
    client = PublishedPipelineClient(httpserver.url_for(path), StaticTokenCredential(SECRET), max_retries=0,
                                     timeout_s=TIMEOUT_S)
    request = queued(env, env.versions[0].version)
    assert dispatch(retrain(env, client), now=T0).startswith("retry in")
    assert env.outbox.get(request.id).status == "pending" and posts == []
    assert dispatch(retrain(env, client), now=T0 + 60) == "submitted run-1"
    assert env.outbox.get(request.id).status == "submitted" and len(posts) == 1
    assert "unconfirmed_resubmission" not in env.stores.audit.get(request.id).data
