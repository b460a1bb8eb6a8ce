"""The v2 training contract on the local pipeline endpoint, sent in its documented shapes.

- Invoke: `POST {invocation URL}` with a token for https://ml.azure.com/.default and the documented REST body of
  "Create jobs and input data for batch endpoints" (https://learn.microsoft.com/azure/machine-learning/
  how-to-access-data-batch-endpoints-jobs, REST tab: `{"properties": {"InputData": {name: {"JobInputType":
  "Literal"|"UriFile", ...}}}}`), the job name where azure-ai-ml's invoke(job_name=...) puts it (`properties.name`)
  and the experiment in `properties.properties.experimentName`; the answer read as azure-ai-ml's
  BatchJob._from_rest_object reads it (id, name, type, properties.status).
- Status: the workspace's ARM Jobs - Get / Jobs - List (paths and JobBase shape as azure-ai-ml's generated ARM client,
  azure/ai/ml/_restclient/arm_ml_service), with a token for https://management.azure.com/.default.
- Run events: RunCompleted with data.runId = the job name and topic = the workspace ARM id
  (https://learn.microsoft.com/azure/event-grid/event-schema-machine-learning)."""

from __future__ import annotations

import uuid

import pytest
import requests

from local.pipeline_endpoint import invocation_url, local_workspace_id
from shared.adapters.credentials import StaticTokenCredential
from tests.local_pipeline import pipeline_endpoint
from tests.waiting import wait_for

SECRET = "local-pipeline-secret-v2"
ML_SCOPE = "https://ml.azure.com/.default"
ARM_SCOPE = "https://management.azure.com/.default"
API_VERSION = "2024-04-01"
ENDED = {"Completed", "Failed", "Canceled"}


@pytest.fixture(scope="module")
def endpoint(azurite, tmp_path_factory, small_bank_csv):
    root = tmp_path_factory.mktemp("pipeline-v2")
    with pipeline_endpoint(azurite, root, small_bank_csv.read_bytes(), token=SECRET,
                           bad_path="bank/bad/data.csv") as running:
        credential = StaticTokenCredential(SECRET)
        base = f"http://127.0.0.1:{running.port}"
        yield {"invoke": invocation_url(base), "jobs": f"{base}{local_workspace_id()}/jobs",
               "receiver": running.events,
               "ml": {"Authorization": f"Bearer {credential.get_token(ML_SCOPE).token}"},
               "arm": {"Authorization": f"Bearer {credential.get_token(ARM_SCOPE).token}"}}


def documented_body(data_path: str = "bank/v1/data.csv", *, name: str | None = None, **literals) -> dict:
    inputs = {"training_data": {"JobInputType": "UriFile",
                                "Uri": f"azureml://datastores/workspaceblobstore/paths/{data_path}"},
              "experiment_name": {"JobInputType": "Literal", "Value": "bank-v2"}}
    inputs.update({key: {"JobInputType": "Literal", "Value": str(value)} for key, value in literals.items()})
    properties = {"InputData": inputs, "properties": {"experimentName": "bank-v2"}}
    if name:
        properties["name"] = name
    return {"properties": properties}


def invoke(endpoint, body, headers=None) -> requests.Response:
    return requests.post(endpoint["invoke"], json=body, headers=headers or endpoint["ml"], timeout=30)


def get_job(endpoint, name, headers=None, query=f"?api-version={API_VERSION}") -> requests.Response:
    return requests.get(f"{endpoint['jobs']}/{name}{query}", headers=headers or endpoint["arm"], timeout=30)


def wait_ended(endpoint, name, timeout=300) -> list[str]:
    """The statuses seen, polling the ARM GET until the job ends (a loaded 2-core machine trains slowly)."""
    seen: list[str] = []

    def ended():
        status = get_job(endpoint, name).json()["properties"]["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        return status in ENDED

    wait_for(ended, timeout=timeout, every=0.1, what=f"job {name} to end")
    return seen


def events_for(receiver, name, timeout=30):
    return wait_for(lambda: [body for req, _ in receiver.log for body in req.get_json()
                             if body["data"]["runId"] == name], timeout=timeout, every=0.2,
                    what=f"an event for {name}")


def test_a_documented_invoke_trains_and_the_arm_job_moves_to_completed(endpoint):
    answer = invoke(endpoint, documented_body(time_budget_s=3, trigger_id="t-v2-1", dataset_version=1))
    assert answer.status_code == 200, answer.text
    job = answer.json()
    name = job["name"]
    assert job["id"] == f"{local_workspace_id()}/jobs/{name}"
    assert job["type"] == "Microsoft.MachineLearningServices/workspaces/jobs"
    assert job["properties"]["status"] == "NotStarted"
    seen = wait_ended(endpoint, name)
    assert seen[0] in ("NotStarted", "Queued", "Running") and "Running" in seen and seen[-1] == "Completed", seen
    assert seen.index("Running") < seen.index("Completed")
    props = get_job(endpoint, name).json()["properties"]
    assert props["jobType"] == "Pipeline" and props["experimentName"] == "bank-v2"
    assert props["outputs"]["model_dir"] == {
        "jobOutputType": "uri_folder", "uri": f"azureml://datastores/workspaceblobstore/paths/azureml/{name}/model_dir/"}
    assert props["inputs"]["training_data"] == {
        "jobInputType": "uri_file", "uri": "azureml://datastores/workspaceblobstore/paths/bank/v1/data.csv"}
    (event,) = events_for(endpoint["receiver"], name)
    assert event["eventType"] == "Microsoft.MachineLearningServices.RunCompleted"
    assert event["topic"] == local_workspace_id() and event["data"]["runId"] == name
    listed = requests.get(f"{endpoint['jobs']}?api-version={API_VERSION}", headers=endpoint["arm"], timeout=30).json()
    assert listed["nextLink"] is None and name in [j["name"] for j in listed["value"]]


def test_tokens_of_the_wrong_audience_are_refused(endpoint):
    for headers in (endpoint["arm"], {"Authorization": f"Bearer {SECRET}"}, {}):
        answer = requests.post(endpoint["invoke"], json=documented_body(), headers=headers, timeout=30)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert answer.json()["error"]["code"]
    answer = get_job(endpoint, "any", headers=endpoint["ml"])
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"


def test_an_unknown_input_is_a_400_naming_it(endpoint):
    body = documented_body()
    body["properties"]["InputData"]["budget_s"] = {"JobInputType": "Literal", "Value": "5"}
    answer = invoke(endpoint, body)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "UserError"
    assert "budget_s" in answer.json()["error"]["message"]
    answer = invoke(endpoint, documented_body(time_budget_s="soon"))
    assert answer.status_code == 400 and "time_budget_s" in answer.json()["error"]["message"]
    body = documented_body()
    body["properties"]["InputData"]["training_data"]["Uri"] = "azureml://datastores/nope/paths/a.csv"
    assert invoke(endpoint, body).status_code == 400


def test_a_taken_job_name_is_a_409_and_an_invalid_one_a_400(endpoint):
    name = f"retrain-t-{uuid.uuid4().hex[:8]}"
    first = invoke(endpoint, documented_body("bank/bad/data.csv", name=name, time_budget_s=2))
    assert first.status_code == 200 and first.json()["name"] == name
    again = invoke(endpoint, documented_body("bank/bad/data.csv", name=name, time_budget_s=2))
    assert again.status_code == 409 and f"'{name}'" in again.json()["error"]["message"]
    assert invoke(endpoint, documented_body(name="bad name;x")).status_code == 400
    assert wait_ended(endpoint, name)[-1] == "Failed"


def test_the_same_body_without_a_name_twice_starts_two_jobs(endpoint):
    body = documented_body("bank/bad/data.csv", time_budget_s=2, trigger_id="t-v2-twice")
    first, second = invoke(endpoint, body), invoke(endpoint, body)
    assert first.status_code == second.status_code == 200
    assert first.json()["name"] != second.json()["name"]
    for answer in (first, second):
        assert wait_ended(endpoint, answer.json()["name"])[-1] == "Failed"


def test_the_arm_routes_want_an_api_version_and_answer_404_for_an_unknown_job(endpoint):
    answer = get_job(endpoint, "nope", query="")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "MissingApiVersionParameter"
    answer = get_job(endpoint, f"nope-{uuid.uuid4().hex[:6]}")
    assert answer.status_code == 404 and answer.json()["error"]["code"] in ("UserError", "ResourceNotFound")


def test_the_deployment_header_must_name_a_deployment_of_the_endpoint(endpoint):
    answer = invoke(endpoint, documented_body(), headers={**endpoint["ml"], "azureml-model-deployment": "nope"})
    assert answer.status_code == 404
    answer = invoke(endpoint, documented_body("bank/bad/data.csv", time_budget_s=2),
                    headers={**endpoint["ml"], "azureml-model-deployment": "train"})
    assert answer.status_code == 200
    assert wait_ended(endpoint, answer.json()["name"])[-1] == "Failed"
