"""The published-pipeline client against a real HTTP server on loopback that checks the documented contract."""

from __future__ import annotations

import json

import pytest
from werkzeug import Response

from shared.adapters.credentials import StaticTokenCredential
from shared.adapters.pipeline_client import (
    PipelineAuthError,
    PipelineError,
    PipelineThrottledError,
    PipelineUnavailableError,
    PublishedPipelineClient,
)

PATH = ("/pipelines/v1.0/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/"
        "workspaces/ws-1/PipelineRuns")
PIPELINE_ID = "0f5a2c1e-9b1d-4a43-8a55-2d7e1f0c9e11"


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
        headers={"Authorization": "Bearer aad-token-123", "Content-Type": "application/json"},
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
    assert "aad-token-123" not in str(info.value)
    assert client.sleeps == []  # auth errors are not retried


def test_429_retries_honouring_retry_after_then_succeeds(httpserver, client):
    url = f"{PATH}/PipelineSubmit/{PIPELINE_ID}"
    httpserver.expect_ordered_request(url).respond_with_response(Response("slow down", 429, {"Retry-After": "7"}))
    httpserver.expect_ordered_request(url).respond_with_response(Response("busy", 503))
    httpserver.expect_ordered_request(url).respond_with_json({"Id": "run-7"})
    assert client.submit(experiment="e", parameters={}).run_id == "run-7"
    assert client.sleeps == [7.0, 1.0]


def test_429_after_all_retries_is_throttled_error(httpserver, client):
    httpserver.expect_request(f"{PATH}/PipelineSubmit/{PIPELINE_ID}").respond_with_response(
        Response(json.dumps({"error": {"code": "TooManyRequests", "message": "quota"}}), 429))
    with pytest.raises(PipelineThrottledError, match=r"throttled \(429\) after 4 tries: TooManyRequests quota"):
        client.submit(experiment="e", parameters={})
    assert client.sleeps == [0.5, 1.0, 2.0]


def test_5xx_after_retries_and_4xx_without(httpserver, client):
    url = f"{PATH}/PipelineSubmit/{PIPELINE_ID}"
    httpserver.expect_request(url, method="POST").respond_with_response(Response("boom", 500))
    with pytest.raises(PipelineUnavailableError, match="pipeline service error 500 after 4 tries: boom"):
        client.submit(experiment="e", parameters={})
    httpserver.clear()
    httpserver.expect_request(url, method="POST").respond_with_json({"error": {"code": "UserError",
                                                                               "message": "bad param"}}, status=400)
    client.sleeps.clear()
    with pytest.raises(PipelineError, match="rejected with 400: UserError bad param"):
        client.submit(experiment="e", parameters={})
    assert client.sleeps == []


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
