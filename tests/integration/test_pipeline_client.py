"""The pipeline clients (v1 published pipeline, v2 batch endpoint) against a real HTTP server on loopback that
checks the documented contract. The local credential hands out one token per audience (scoped_token), so a wrong
scope fails here as in Azure."""

from __future__ import annotations

import json

import pytest
from werkzeug import Response

from shared.adapters.credentials import StaticTokenCredential, scoped_token
from shared.adapters.pipeline_client import (
    ARM_SCOPE,
    ML_SCOPE,
    PipelineAuthError,
    PipelineError,
    PipelineThrottledError,
    PipelineUnavailableError,
    PublishedPipelineClient,
)

PATH = ("/pipelines/v1.0/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/"
        "workspaces/ws-1/PipelineRuns")
PIPELINE_ID = "0f5a2c1e-9b1d-4a43-8a55-2d7e1f0c9e11"
ARM_TOKEN = scoped_token("aad-token-123", ARM_SCOPE)


class RecordingCredential(StaticTokenCredential):
    def __init__(self, token):
        super().__init__(token)
        self.scopes = []

    def get_token(self, *scopes, **kwargs):
        self.scopes.append(scopes)
        return super().get_token(*scopes, **kwargs)


@pytest.fixture
def client(httpserver):
    sleeps = []
    credential = RecordingCredential("aad-token-123")
    c = PublishedPipelineClient(httpserver.url_for(f"{PATH}/PipelineSubmit/{PIPELINE_ID}"), credential,
                                max_retries=3, backoff_s=0.5, sleep=sleeps.append)
    c.sleeps, c.credential = sleeps, credential
    return c


def test_submit_sends_the_documented_request(httpserver, client):
    expected_body = {
        "ExperimentName": "bankmarketing-retrain",
        "RunSource": "SDK",
        "ParameterAssignments": {"dataset_version": "3", "reason": "upload"},
        "DataPathAssignments": {"training_data": {"DataStoreName": "workspaceblobstore",
                                                  "RelativePath": "bankmarketing/v3/data.csv"}},
    }
    httpserver.expect_oneshot_request(
        f"{PATH}/PipelineSubmit/{PIPELINE_ID}", method="POST", json=expected_body,
        headers={"Authorization": f"Bearer {ARM_TOKEN}", "Content-Type": "application/json"},
    ).respond_with_json({"Id": "run-42", "Status": {"StatusCode": "NotStarted", "RunStatus": "NotStarted"}})
    run = client.submit(experiment="bankmarketing-retrain", parameters={"dataset_version": 3, "reason": "upload"},
                        data_paths=expected_body["DataPathAssignments"])
    httpserver.check_assertions()
    assert run.run_id == "run-42" and run.status == "NotStarted"
    assert client.credential.scopes == [("https://management.azure.com/.default",)]


def test_get_run_maps_status(httpserver, client):
    httpserver.expect_request(f"{PATH}/run-42", method="GET").respond_with_json(
        {"Id": "run-42", "Status": {"StatusCode": "Finished"}})
    run = client.get_run("run-42")
    assert run.status == "Completed" and run.finished


def test_401_is_a_clear_error_without_the_token(httpserver, client):
    httpserver.expect_request(f"{PATH}/PipelineSubmit/{PIPELINE_ID}").respond_with_json(
        {"error": {"code": "AuthenticationFailed"}}, status=401)
    with pytest.raises(PipelineAuthError) as info:
        client.submit(experiment="e", parameters={})
    assert "401 Unauthorized" in str(info.value) and "AzureML Data Scientist" in str(info.value)
    assert "aad-token-123" not in str(info.value) and ARM_TOKEN not in str(info.value)
    assert client.sleeps == []  # auth errors are not retried


def test_a_service_error_that_echoes_the_request_does_not_carry_its_secrets(httpserver, client):
    """The error text reaches the audit and the logs: the token and a SAS the service repeats are masked."""
    echo = (f"UserError: request Authorization: Bearer {ARM_TOKEN} failed reading "
            "https://acct.blob.core.windows.net/c/data.csv?sv=2024-01-01&sig=SASSIGNATURE")
    httpserver.expect_request(f"{PATH}/PipelineSubmit/{PIPELINE_ID}").respond_with_json(
        {"error": {"code": "UserError", "message": echo}}, status=400)
    with pytest.raises(PipelineError) as info:
        client.submit(experiment="e", parameters={})
    assert "rejected with 400: UserError" in str(info.value)
    assert ARM_TOKEN not in str(info.value) and "SASSIGNATURE" not in str(info.value)
    assert "sig=[REDACTED]" in str(info.value)


def test_429_retries_honouring_retry_after_then_succeeds(httpserver, client):
    """A 429 is a refusal before the service acts: sent again, after its Retry-After."""
    url = f"{PATH}/PipelineSubmit/{PIPELINE_ID}"
    httpserver.expect_ordered_request(url).respond_with_response(Response("slow down", 429, {"Retry-After": "7"}))
    httpserver.expect_ordered_request(url).respond_with_response(Response("slow down", 429))
    httpserver.expect_ordered_request(url).respond_with_json({"Id": "run-7"})
    assert client.submit(experiment="e", parameters={}).run_id == "run-7"
    assert client.sleeps == [7.0, 1.0]


def test_429_after_all_retries_is_throttled_error(httpserver, client):
    httpserver.expect_request(f"{PATH}/PipelineSubmit/{PIPELINE_ID}").respond_with_response(
        Response(json.dumps({"error": {"code": "TooManyRequests", "message": "quota"}}), 429))
    with pytest.raises(PipelineThrottledError, match=r"throttled \(429\) after 4 tries: TooManyRequests quota"):
        client.submit(experiment="e", parameters={})
    assert client.sleeps == [0.5, 1.0, 2.0]


def test_a_v1_submit_that_fails_with_5xx_is_not_sent_again_and_may_have_started(httpserver, client):
    """PipelineSubmit has no idempotency key: a POST answered 5xx may have started a run, so the client does not
    repeat it (the dispatcher looks the run up first); a 4xx is a refusal, not retried either."""
    url = f"{PATH}/PipelineSubmit/{PIPELINE_ID}"
    httpserver.expect_request(url, method="POST").respond_with_response(Response("boom", 500))
    with pytest.raises(PipelineUnavailableError, match="pipeline service error 500 after 1 tries: boom") as info:
        client.submit(experiment="e", parameters={})
    assert info.value.maybe_started and client.sleeps == [] and len(httpserver.log) == 1
    httpserver.clear()
    httpserver.expect_request(url, method="POST").respond_with_json({"error": {"code": "UserError",
                                                                               "message": "bad param"}}, status=400)
    with pytest.raises(PipelineError, match="rejected with 400: UserError bad param"):
        client.submit(experiment="e", parameters={})
    assert client.sleeps == []


def test_a_status_read_is_retried_on_5xx(httpserver, client):
    """A GET starts nothing: retried like any idempotent call, and its failure never says a run may have started."""
    httpserver.expect_ordered_request(f"{PATH}/run-9").respond_with_response(Response("busy", 503))
    httpserver.expect_ordered_request(f"{PATH}/run-9").respond_with_json({"Id": "run-9",
                                                                          "Status": {"StatusCode": "Running"}})
    assert client.get_run("run-9").status == "Running" and client.sleeps == [0.5]
    httpserver.expect_request(f"{PATH}/run-10").respond_with_response(Response("down", 502))
    with pytest.raises(PipelineUnavailableError, match="502 after 4 tries") as info:
        client.get_run("run-10")
    assert not info.value.maybe_started


def test_connection_refused_is_retried_then_reported():
    from local.processes import free_port

    sleeps = []
    client = PublishedPipelineClient(f"http://127.0.0.1:{free_port()}{PATH}/PipelineSubmit/x",
                                     StaticTokenCredential("t"), max_retries=2, sleep=sleeps.append)
    with pytest.raises(PipelineUnavailableError, match="cannot connect to the pipeline service"):
        client.submit(experiment="e", parameters={})
    assert len(sleeps) == 2


def test_rejects_a_url_that_is_not_a_published_pipeline():
    with pytest.raises(ValueError, match="PipelineSubmit"):
        PublishedPipelineClient("https://example.invalid/score", StaticTokenCredential("t"))


def test_v1_pipeline_endpoint_submit_url_takes_the_same_body(httpserver):
    url = f"{PATH}/PipelineEndpointSubmit/Id/{PIPELINE_ID}"
    credential = RecordingCredential("arm-token")
    client = PublishedPipelineClient(httpserver.url_for(url), credential, max_retries=0)
    httpserver.expect_oneshot_request(url, method="POST", headers={
        "Authorization": f"Bearer {scoped_token('arm-token', ARM_SCOPE)}"}, json={
        "ExperimentName": "exp", "RunSource": "SDK", "ParameterAssignments": {"seed": "7"}},
    ).respond_with_json({"Id": "run-e"})
    assert client.submit(experiment="exp", parameters={"seed": 7}).run_id == "run-e"
    httpserver.expect_oneshot_request(f"{PATH}/run-e", method="GET").respond_with_json(
        {"Id": "run-e", "Status": {"StatusCode": "Running"}})
    assert client.get_run("run-e").status == "Running"
    assert credential.scopes == [("https://management.azure.com/.default",)] * 2


WORKSPACE = ("/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/"
             "workspaces/ws-1")


def test_v2_batch_endpoint_invocation_body_scope_and_job_status(httpserver):
    from shared.adapters.pipeline_client import BatchEndpointPipelineClient

    credential = RecordingCredential("token")
    client = BatchEndpointPipelineClient(httpserver.url_for("/jobs"), credential, workspace_id=WORKSPACE,
                                         deployment="train-v3", arm_url=httpserver.url_for("/arm"), max_retries=0)
    expected = {"properties": {"InputData": {
        "experiment_name": {"JobInputType": "Literal", "Value": "bankmarketing-retrain"},
        "dataset_version": {"JobInputType": "Literal", "Value": 4},
        "time_budget_s": {"JobInputType": "Literal", "Value": 60},
        "training_data": {"JobInputType": "UriFile",
                          "Uri": "azureml://datastores/workspaceblobstore/paths/bankmarketing/v4/data.csv"},
    }, "properties": {"experimentName": "bankmarketing-retrain"}}}
    httpserver.expect_oneshot_request("/jobs", method="POST", json=expected, headers={
        "Authorization": f"Bearer {scoped_token('token', ML_SCOPE)}", "azureml-model-deployment": "train-v3"}
    ).respond_with_json(
        {"id": f"{WORKSPACE}/jobs/batchjob-1", "name": "batchjob-1", "properties": {"status": "Preparing"}})
    run = client.submit(experiment="bankmarketing-retrain", parameters={"dataset_version": 4, "time_budget_s": 60},
                        data_paths={"training_data": {"DataStoreName": "workspaceblobstore",
                                                      "RelativePath": "bankmarketing/v4/data.csv"}})
    httpserver.check_assertions()
    assert run.run_id == "batchjob-1" and run.status == "Queued"
    httpserver.expect_oneshot_request(f"/arm{WORKSPACE}/jobs/batchjob-1", method="GET",
                                      query_string="api-version=2024-04-01").respond_with_json(
        {"name": "batchjob-1", "properties": {"status": "Completed"}})
    assert client.get_run("batchjob-1").status == "Completed"
    assert credential.scopes == [("https://ml.azure.com/.default",), ("https://management.azure.com/.default",)]


def test_v2_errors_are_clear(httpserver):
    from shared.adapters.pipeline_client import BatchEndpointPipelineClient

    with pytest.raises(ValueError, match="AZUREML_WORKSPACE_ID"):
        BatchEndpointPipelineClient("https://x.inference.ml.azure.com/jobs", StaticTokenCredential("t"),
                                    workspace_id="ws-1")
    client = BatchEndpointPipelineClient(httpserver.url_for("/jobs"), StaticTokenCredential("t"),
                                         workspace_id=WORKSPACE, max_retries=0)
    httpserver.expect_request("/jobs").respond_with_json({"error": {"code": "UserError",
                                                                    "message": "Input dataset_version not found"}},
                                                         status=400)
    with pytest.raises(PipelineError, match="rejected with 400: UserError Input dataset_version not found"):
        client.submit(experiment="e", parameters={"dataset_version": 1})
