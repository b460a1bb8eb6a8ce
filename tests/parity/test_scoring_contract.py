"""One scoring contract: the local endpoint answers the documented requests of a managed online endpoint serving
an MLflow model without a scoring script (what shared/adapters/azure_online/deployer.py creates) exactly as
that deployment does.

Sources (cited in local/scoring_server/formats.py and shared/scoring/contract.py):
- Learn, "Deploy MLflow models to online endpoints" > "Invoke the endpoint": the request
  `{"input_data": {"columns": [...], "index": [...], "data": [[...]]}}`;
  https://learn.microsoft.com/azure/machine-learning/how-to-deploy-mlflow-models-online-endpoints
- Azure ML's generated scoring script, github.com/Azure/azureml-assets,
  assets/inference/environments/mlflow-ubuntu20.04-py39-cpu-inference/context/mlflow_score_script.py:
  `run(input_data, params=None)` returns `_get_jsonable_obj(model.predict(frame), pandas_orient="records")`;
- azureml-inference-server-http 1.5.1, server/input_parsers.py (ObjectInput) and server/routes.py: the 400 / 415
  / 500 answers `{"message": ...}`;
- Learn, "Troubleshoot online endpoints" > "HTTP status codes": 401, 404 (no deployment with positive weight),
  424 with `ms-azureml-model-error-statuscode` / `ms-azureml-model-error-reason` for a non-200 deployment answer.
"""

from __future__ import annotations

import io
import json

import mlflow.pyfunc
import pandas as pd
import pytest
import requests
from mlflow.pyfunc.scoring_server import _get_jsonable_obj

from shared.adapters.azure_online import AzureEndpointScorer
from shared.adapters.scoring import EndpointScorer, LocalScoringDeployer, ScoringClient
from shared.domain import schema
from tests.integration.test_scoring_bluegreen import save_pipeline_model, scoring_server, serve_from_start

SCORING_KEY = "parity-score-key-81d2"
ADMIN_KEY = "parity-admin-key-3f0e"
FEATURES = list(schema.FEATURES)


@pytest.fixture(scope="module")
def records(small_bank_csv) -> list[dict]:
    return pd.read_csv(small_bank_csv, nrows=300)[FEATURES].iloc[200:206].to_dict(orient="records")


@pytest.fixture(scope="module")
def model_dir(small_bank_csv, tmp_path_factory):
    return save_pipeline_model(tmp_path_factory.mktemp("parity-model") / "model", pd.read_csv(small_bank_csv,
                                                                                              nrows=1000), seed=3)


@pytest.fixture(scope="module")
def endpoint(model_dir, tmp_path_factory):
    yield from scoring_server(tmp_path_factory.mktemp("parity-scoring"), *serve_from_start(model_dir, "4"),
                              scoring_key=SCORING_KEY, admin_key=ADMIN_KEY)


@pytest.fixture(scope="module")
def empty_endpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity-empty")
    yield from scoring_server(root, "--models-root", str(root), scoring_key=SCORING_KEY, admin_key=ADMIN_KEY)


def documented_request(records: list[dict]) -> dict:
    """The request of the Learn page, with its three keys."""
    return {"input_data": {"columns": FEATURES, "index": list(range(len(records))),
                           "data": [[r[c] for c in FEATURES] for r in records]}}


def post(url: str, body: bytes | dict, *, key: str = SCORING_KEY, content_type: str = "application/json"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(url + "/score", data=raw, timeout=30,
                         headers={"Authorization": f"Bearer {key}", "Content-Type": content_type})


def what_azure_answers(model_dir, body: dict) -> list:
    """The no-code script's answer for our model: the split frame through MLflow's pyfunc predict, as JSON."""
    frame = pd.read_json(io.StringIO(json.dumps(body["input_data"])), orient="split", dtype=False)
    return _get_jsonable_obj(mlflow.pyfunc.load_model(str(model_dir)).predict(frame), pandas_orient="records")


def test_the_documented_request_is_answered_with_a_bare_list_of_predictions(endpoint, model_dir, records):
    body = documented_request(records)
    answer = post(endpoint.url, body)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == what_azure_answers(model_dir, body)
    assert len(answer.json()) == len(records) and set(answer.json()) <= {0, 1}
    assert answer.headers["azureml-model-deployment"] == "blue"


def test_one_client_reads_the_local_endpoint_as_it_reads_azure(endpoint, model_dir, records):
    """The Azure scorer and the local one are the same class, reading the same answer."""
    assert AzureEndpointScorer is EndpointScorer and issubclass(ScoringClient, EndpointScorer)
    slots = LocalScoringDeployer(endpoint.url, ADMIN_KEY)
    client = ScoringClient(endpoint.url, SCORING_KEY, version_of=slots.slot_version)
    expected = what_azure_answers(model_dir, documented_request(records))
    assert client.score(records) == {"result": [schema.TARGET_VALUES[p] for p in expected], "model_version": "4",
                                     "deployment": "blue"}


@pytest.mark.parametrize("raw, content_type, status, message", [
    (b'{"input_data": {}}', "text/plain", 415, "Expects Content-Type to be application/json"),
    (b"", "application/json", 400, "POST body is empty. Expecting a JSON dictionary."),
    (b"{oops", "application/json", 400, "POST body could not be decoded as JSON: Expecting property name enclosed "
                                        "in double quotes: line 1 column 2 (char 1)"),
    (b"[[1, 2]]", "application/json", 400, "POST body should be a JSON dictionary."),
    (b'{"data": [{"age": 41}]}', "application/json", 400,
     "A value is not provided for the 'input_data' parameter."),  # the seeds' shape: refused, as in Azure
    (b'{"input_data": [[41, "admin."]]}', "application/json", 500,
     "An unexpected error occurred in scoring script. Check the logs for more info."),
])
def test_the_inference_servers_refusals_come_back_as_424(endpoint, raw, content_type, status, message):
    answer = post(endpoint.url, raw, content_type=content_type)
    assert answer.status_code == 424
    assert answer.headers["ms-azureml-model-error-statuscode"] == str(status)
    assert answer.headers["ms-azureml-model-error-reason"] == "model_error"
    assert answer.json() == {"message": message}


def test_without_a_key_401_and_without_a_deployment_404(endpoint, empty_endpoint, records):
    assert post(endpoint.url, documented_request(records), key="wrong").status_code == 401
    assert post(empty_endpoint.url, documented_request(records)).status_code == 404


def test_the_swagger_describes_the_inference_servers_contract(endpoint, records):
    doc = requests.get(endpoint.url + "/swagger.json", timeout=10).json()
    assert doc["paths"]["/score"]["post"]["parameters"][0]["schema"] == {"$ref": "#/definitions/ServiceInput"}
    defs = doc["definitions"]
    assert defs["ServiceInput"]["properties"]["input_data"]["format"] == "pandas.DataFrame:split"
    assert defs["ErrorResponse"] == {"type": "object", "properties": {"message": {"type": "string"}}}
    assert post(endpoint.url, defs["ServiceInput"]["example"]).status_code == 200
