"""Finding the run a request already started, on the wire: the v2 client names the job after the trigger and GETs it
on ARM; the v1 client lists the published pipeline's runs. A real HTTP server on loopback that does NOT deduplicate
(pytest-httpserver handlers following the documented contract and the SDK source cited in pipeline_client)."""

from __future__ import annotations

import re

import pytest
from werkzeug import Response

from shared.adapters.credentials import StaticTokenCredential, scoped_token
from shared.adapters.pipeline_client import (
    ARM_SCOPE,
    BatchEndpointPipelineClient,
    PipelineError,
    PipelineUnavailableError,
    PublishedPipelineClient,
    job_name,
)
from tests.fake_azureml import PIPELINE_ID, SECRET, V1_RUNS, WORKSPACE, BatchWorkspace

V1 = V1_RUNS


@pytest.fixture
def workspace(httpserver):
    return BatchWorkspace(httpserver)


def _re(prefix: str) -> re.Pattern:
    return re.compile(re.escape(prefix) + r"[^/]+")


def v2(httpserver, **kwargs) -> BatchEndpointPipelineClient:
    return BatchEndpointPipelineClient(httpserver.url_for("/jobs"), StaticTokenCredential(SECRET),
                                       workspace_id=WORKSPACE, arm_url=httpserver.url_for("/arm"),
                                       **{"max_retries": 0, **kwargs})


def test_v2_names_the_job_after_the_trigger_in_properties_name(httpserver, workspace):
    run = v2(httpserver).submit(experiment="exp", parameters={"trigger_id": "blob-1a2b", "dataset_version": 3})
    (sent, _), = httpserver.log
    body = sent.get_json()["properties"]
    # azure-ai-ml: invoke(job_name=...) -> BatchJobSchema.make writes wire "name" inside "properties"
    assert body["name"] == "retrain-blob-1a2b" and run.run_id == "retrain-blob-1a2b"
    assert body["InputData"]["trigger_id"] == {"JobInputType": "Literal", "Value": "blob-1a2b"}  # runs still carry it


def test_v2_find_run_gets_the_job_by_name_on_arm_404_is_none(httpserver, workspace):
    client = v2(httpserver)
    assert client.find_run("never-submitted") is None
    client.submit(experiment="exp", parameters={"trigger_id": "hook-7"})
    found = client.find_run("hook-7")
    assert found is not None and found.run_id == "retrain-hook-7" and found.status == "NotStarted"
    gets = [r for r, _ in httpserver.log if r.method == "GET"]
    assert [(r.path, r.args.get("api-version")) for r in gets] == [
        (f"/arm{WORKSPACE}/jobs/retrain-never-submitted", "2024-04-01"),
        (f"/arm{WORKSPACE}/jobs/retrain-hook-7", "2024-04-01")]
    assert {r.headers["Authorization"] for r in gets} == {f"Bearer {scoped_token(SECRET, ARM_SCOPE)}"}


def test_v2_a_repeated_submit_is_refused_409_and_answered_with_the_existing_job(httpserver, workspace):
    """The server does not deduplicate: only the name makes the second invoke harmless."""
    client = v2(httpserver)
    first = client.submit(experiment="exp", parameters={"trigger_id": "blob-9"})
    again = client.submit(experiment="exp", parameters={"trigger_id": "blob-9"})
    assert again.run_id == first.run_id == "retrain-blob-9"
    assert list(workspace.jobs) == ["retrain-blob-9"] and workspace.invokes == 2
    assert [r.method for r, _ in httpserver.log] == ["POST", "POST", "GET"]


def test_v2_without_a_trigger_id_the_service_names_it_and_two_submits_make_two_jobs(httpserver, workspace):
    client = v2(httpserver)
    a = client.submit(experiment="exp", parameters={})
    b = client.submit(experiment="exp", parameters={})
    assert a.run_id != b.run_id and "name" not in httpserver.log[0][0].get_json()["properties"]


def test_v2_a_5xx_on_a_named_invoke_is_sent_again_and_the_409_adopts_the_job(httpserver):
    """The gateway failed after the job was created: the repeat (same name) is refused and answered with it."""
    calls = []

    def flaky(request):
        calls.append(1)
        answer = ws.invoke(request)
        return Response("bad gateway", 502) if len(calls) == 1 else answer

    httpserver.expect_oneshot_request("/jobs", method="POST").respond_with_handler(flaky)
    httpserver.expect_oneshot_request("/jobs", method="POST").respond_with_handler(flaky)
    ws = BatchWorkspace(httpserver)
    run = v2(httpserver, max_retries=2, sleep=lambda s: None).submit(experiment="e",
                                                                      parameters={"trigger_id": "t-1"})
    assert run.run_id == "retrain-t-1" and list(ws.jobs) == ["retrain-t-1"] and ws.invokes == 2


def test_v2_find_run_failing_raises_as_every_call_does(httpserver):
    httpserver.expect_request(_re(f"/arm{WORKSPACE}/jobs/")).respond_with_response(Response("down", 503))
    with pytest.raises(PipelineUnavailableError, match="503"):
        v2(httpserver).find_run("t-2")
    httpserver.clear()
    httpserver.expect_request(_re(f"/arm{WORKSPACE}/jobs/")).respond_with_json(
        {"error": {"code": "AuthorizationFailed", "message": "no"}}, status=403)
    with pytest.raises(PipelineError, match="403"):
        v2(httpserver).find_run("t-2")


def test_v2_a_409_whose_job_cannot_be_read_yet_stays_unconfirmed_not_a_new_job(httpserver):
    httpserver.expect_request("/jobs", method="POST").respond_with_json(
        {"error": {"code": "UserError", "message": "A job with name 'retrain-x' already exists."}}, status=409)
    httpserver.expect_request(_re(f"/arm{WORKSPACE}/jobs/")).respond_with_json(
        {"error": {"code": "UserError", "message": "not found"}}, status=404)
    with pytest.raises(PipelineUnavailableError, match="is taken \\(409\\) but GET jobs/retrain-x found no such job") \
            as info:
        v2(httpserver).submit(experiment="e", parameters={"trigger_id": "x"})
    assert info.value.maybe_started and info.value.status is None  # retried (looked up again), never failed


def _v1_run(run_id: str, trigger_id: str | None, created: str) -> dict:
    params = {"dataset_version": "3"} | ({"trigger_id": trigger_id} if trigger_id else {})
    return {"Id": run_id, "ParameterAssignments": params,
            "Status": {"StatusCode": "Running", "RunStatus": "Running", "CreationTime": created}}


def test_v1_find_run_lists_the_pipelines_runs_and_picks_the_trigger_newest_first(httpserver):
    client = PublishedPipelineClient(httpserver.url_for(f"{V1}/PipelineSubmit/{PIPELINE_ID}"),
                                     StaticTokenCredential(SECRET), max_retries=0)
    httpserver.expect_request(f"{V1}/Pipeline/{PIPELINE_ID}", method="GET", headers={
        "Authorization": f"Bearer {scoped_token(SECRET, ARM_SCOPE)}"}).respond_with_json([
            _v1_run("run-a", "blob-1", "2026-12-07T06:00:00Z"), _v1_run("run-b", "blob-2", "2026-12-07T06:01:00Z"),
            _v1_run("run-c", "blob-1", "2026-12-07T06:02:00Z"), _v1_run("run-d", None, "2026-12-07T06:03:00Z")])
    assert client.find_run("blob-1").run_id == "run-c"
    assert client.find_run("blob-2").run_id == "run-b"
    assert client.find_run("blob-3") is None


def test_v1_pipeline_endpoint_urls_cannot_look_runs_up(httpserver):
    client = PublishedPipelineClient(httpserver.url_for(f"{V1}/PipelineEndpointSubmit/Id/{PIPELINE_ID}"),
                                     StaticTokenCredential(SECRET), max_retries=0)
    with pytest.raises(PipelineError, match="cannot be listed by trigger id"):
        client.find_run("blob-1")
    assert httpserver.log == []


@pytest.mark.parametrize("trigger_id", ["blob-1a2b", "9f8e-77", "a" * 247])
def test_job_name_keeps_a_valid_trigger_id_readable(trigger_id):
    assert job_name(trigger_id) == f"retrain-{trigger_id}"


@pytest.mark.parametrize("trigger_id", ["hook:42", "a.b", "ü-x", "a" * 248, "x/../y"])
def test_job_name_fits_the_arm_rule(trigger_id):
    name = job_name(trigger_id)
    assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}", name), name
    assert name.startswith("retrain-") and job_name(trigger_id) == name


def test_ids_that_sanitise_alike_get_different_names():
    assert len({job_name("a.b"), job_name("a:b"), job_name("a-b"), job_name("a/b")}) == 4


def _camel(value):
    """azure-ai-ml writes camelCase keys, the documented REST form PascalCase: compared with first letters lowered."""
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:]): _camel(v) for k, v in value.items()}
    return value


def test_the_named_invoke_is_the_body_azure_ai_ml_sends_for_job_name(httpserver, workspace):
    """BatchEndpointOperations.invoke(job_name=…, experiment_name=…) builds its body with BatchJobSchema from
    params_override (BATCH_JOB_INPUT_DATA, BATCH_JOB_NAME, BATCH_JOB_PROPERTIES: operations/
    _batch_endpoint_operations.py); the schema's `make` writes the name as wire `name` inside `properties`."""
    from pathlib import Path

    from azure.ai.ml import Input
    from azure.ai.ml._schema._deployment.batch.batch_job import BatchJobSchema
    from azure.ai.ml.constants._common import BASE_PATH_CONTEXT_KEY, PARAMS_OVERRIDE_KEY
    from azure.ai.ml.constants._endpoint import EndpointYamlFields

    v2(httpserver).submit(experiment="exp", parameters={"trigger_id": "blob-5"})
    (sent, _), = httpserver.log
    overrides = [{EndpointYamlFields.BATCH_JOB_INPUT_DATA: {
                     "experiment_name": Input(type="string", default="exp"),
                     "trigger_id": Input(type="string", default="blob-5")}},
                 {EndpointYamlFields.BATCH_JOB_NAME: "retrain-blob-5"},
                 {EndpointYamlFields.BATCH_JOB_PROPERTIES: {"experimentName": "exp"}}]
    sdk = BatchJobSchema(context={BASE_PATH_CONTEXT_KEY: Path("."), PARAMS_OVERRIDE_KEY: overrides}).load(data={})
    assert _camel(sent.get_json()) == _camel({"properties": sdk})
