"""POST /score's one request format against a real server process: what an Azure ML no-code MLflow deployment
reads, `{"input_data": <pandas split frame>, "params"?}`, answered with a bare list of the model's 0/1; every
request that deployment refuses is refused alike (424 around the inference server's status and message:
local/scoring_server/formats.py cites the sources), and /swagger.json describes exactly that.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import requests

from shared.domain import schema
from shared.scoring.runtime import ScoringModel
from tests.integration.test_scoring_bluegreen import save_pipeline_model, scoring_server, serve_from_start

SCORING_KEY = "fmt-score-key-5b1d"
ADMIN_KEY = "fmt-admin-key-0c3a"
FEATURES = list(schema.FEATURES)


@pytest.fixture(scope="module")
def frame(small_bank_csv) -> pd.DataFrame:
    return pd.read_csv(small_bank_csv, nrows=1200)


@pytest.fixture(scope="module")
def records(frame) -> list[dict]:
    return frame[FEATURES].iloc[100:110].to_dict(orient="records")


@pytest.fixture(scope="module")
def model_dir(frame, tmp_path_factory):
    return save_pipeline_model(tmp_path_factory.mktemp("fmt-model") / "model", frame, seed=4)


@pytest.fixture(scope="module")
def local(model_dir) -> ScoringModel:
    return ScoringModel.load(model_dir, "7")


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    yield from scoring_server(tmp_path_factory.mktemp("fmt-scoring"), *serve_from_start(model_dir, "7"),
                              scoring_key=SCORING_KEY, admin_key=ADMIN_KEY)


def post(server, body, key=SCORING_KEY) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(server.url + "/score", json=body, headers=headers, timeout=30)


def labels01(local: ScoringModel, records) -> list[int]:
    return [int(label == "yes") for label in local.predict_records(records)["result"]]


RUN_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."
NO_INPUT_DATA = "A value is not provided for the 'input_data' parameter."


def refused(answer: requests.Response, status: int, message: str) -> bool:
    """The endpoint's 424 around the deployment's own answer (Learn: troubleshoot online endpoints, 424)."""
    return (answer.status_code, answer.headers.get("ms-azureml-model-error-statuscode"),
            answer.headers.get("ms-azureml-model-error-reason"), answer.json()) == (
        424, str(status), "model_error", {"message": message})


def mlflow(records, columns=FEATURES, index=True) -> dict:
    body = {"columns": columns, "data": [[r[c] for c in columns] for r in records]}
    if index:
        body["index"] = list(range(len(records)))
    return {"input_data": body}


# -------------------------------------------------------------------------------------------- answers


@pytest.mark.parametrize("columns, index", [(FEATURES, True), (FEATURES[::-1], False)])
def test_input_data_answers_a_bare_list_of_predictions(server, local, records, columns, index):
    """Columns in any order, `index` optional (pandas split orientation)."""
    answer = post(server, mlflow(records, columns, index))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == labels01(local, records)
    assert answer.headers["azureml-model-deployment"] == "blue" and "x-model-version" not in answer.headers


def test_params_and_other_top_level_keys_are_passed_over(server, local, records):
    """The server hands run() only `input_data` and `params`; this model takes no params."""
    body = {**mlflow(records), "params": {"threshold": 0.9}, "data": "ignored", "Inputs": {}}
    answer = post(server, body)
    assert answer.status_code == 200 and answer.json() == labels01(local, records)


def test_an_empty_frame_answers_an_empty_list(server):
    assert post(server, mlflow([])).json() == []


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("body", [
    {"data": [{"age": 1}]},  # the seeds' format: Azure's no-code deployment has no `data` parameter
    {"Inputs": {"data": [{"age": 1}]}, "GlobalParameters": {"method": "predict"}},  # AutoML's scoring script
    {"dataframe_split": {"columns": ["age"], "data": [[1]]}},  # `mlflow models serve`, not Azure
    {"params": {}},
])
def test_requests_without_input_data_are_refused_as_azure_does(server, body):
    assert refused(post(server, body), 400, NO_INPUT_DATA)


@pytest.mark.parametrize("change", [{"age": "old"}, {"job": 7}, {"euribor3m": None}])
def test_a_record_of_the_wrong_type_fails_the_scoring_script(server, records, change):
    bad = [records[0], {**records[1], **change}]
    assert refused(post(server, mlflow(bad)), 500, RUN_FAILED)


def test_a_missing_column_fails_the_scoring_script(server, records):
    columns = [c for c in FEATURES if c != "pdays"]
    assert refused(post(server, mlflow(records[:2], columns)), 500, RUN_FAILED)


@pytest.mark.parametrize("input_data", [
    [[1, 2]],  # a tensor: the deployment reads a DataFrame (the model's input example is one)
    {"age": [1, 2]},  # named tensors: likewise
    {"data": [[1]]},  # no columns
    {"columns": ["age"], "data": {"age": 1}},
    {"columns": ["age"], "data": [[1], [2]], "index": [0]},
    {"columns": ["age", "job"], "data": [[1, "x"], [2]]},
    {"columns": ["age"], "data": [{"age": 1}]},
    {"columns": FEATURES, "data": [], "orient": "split"},  # read_json(orient="split") refuses unknown keys
])
def test_input_data_that_is_not_a_split_frame_fails_the_scoring_script(server, input_data):
    assert refused(post(server, {"input_data": input_data}), 500, RUN_FAILED)


def test_every_request_needs_the_scoring_key(server, records):
    for key in (None, ADMIN_KEY, "nope"):
        answer = post(server, mlflow(records[:1]), key=key)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
        assert SCORING_KEY not in answer.text and ADMIN_KEY not in answer.text


def test_only_a_json_post_is_scored(server, records):
    auth = {"Authorization": f"Bearer {SCORING_KEY}"}
    answer = requests.get(server.url + "/score", headers=auth, timeout=10)
    assert refused(answer, 400, NO_INPUT_DATA)  # a GET's query string is the input: it has none
    answer = requests.put(server.url + "/score", headers=auth, json=mlflow(records[:1]), timeout=10)
    assert refused(answer, 405, "The method is not allowed for the requested URL.")
    answer = requests.post(server.url + "/score", data=b'{"input_data": {}}', timeout=10,
                           headers={**auth, "Content-Type": "text/plain"})
    assert refused(answer, 415, "Expects Content-Type to be application/json")
    answer = requests.post(server.url + "/score", data=json.dumps(mlflow(records[:1])), timeout=10,
                           headers={**auth, "Content-Type": "application/json; charset=utf-8"})
    assert answer.status_code == 200


# -------------------------------------------------------------------------------------------- swagger


def test_swagger_describes_exactly_what_is_accepted(server, local):
    doc = requests.get(server.url + "/swagger.json", timeout=10).json()
    defs = doc["definitions"]
    service_input = defs["ServiceInput"]
    assert service_input["required"] == ["input_data"] and set(service_input["properties"]) == {"input_data", "params"}
    frame = service_input["properties"]["input_data"]
    assert set(frame["properties"]) == {"columns", "index", "data"} and frame["required"] == ["columns", "data"]
    assert defs["ServiceOutput"]["type"] == "array" and defs["ServiceOutput"]["items"]["enum"] == [0, 1]
    # the document's example is a request the server accepts, answered in the documented shape
    answer = post(server, service_input["example"])
    assert answer.status_code == 200, answer.text
    assert len(answer.json()) == 1 and answer.json()[0] in defs["ServiceOutput"]["items"]["enum"]
