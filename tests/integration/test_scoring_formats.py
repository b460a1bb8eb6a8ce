"""The three request formats of POST /score against a real server process: the seeds' {"data"}, Azure AutoML
v2's {"Inputs", "GlobalParameters"} and Azure ML / MLflow's {"input_data"} (split orientation), each answered
in its own exact shape, validated by the same runtime code (errors name the record and the column), and
described in /swagger.json.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import requests

from local.scoring_server import FORMATS_HINT
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


def automl(records, **params) -> dict:
    return {"Inputs": {"data": records}, **({"GlobalParameters": params} if params else {})}


def mlflow(records, columns=FEATURES, index=True) -> dict:
    body = {"columns": columns, "data": [[r[c] for c in columns] for r in records]}
    if index:
        body["index"] = list(range(len(records)))
    return {"input_data": body}


# -------------------------------------------------------------------------------------------- answers


def test_data_format_answers_result_probabilities_and_version(server, local, records):
    answer = post(server, {"data": records})
    assert answer.status_code == 200
    body = answer.json()
    expected = local.predict_records(records)
    assert list(body) == ["result", "probabilities", "model_version"]
    assert body["result"] == expected["result"] and body["model_version"] == "7"
    np.testing.assert_allclose(body["probabilities"], expected["probabilities"], rtol=1e-12)
    assert answer.headers["azureml-model-deployment"] == "blue" and answer.headers["x-model-version"] == "7"


@pytest.mark.parametrize("params", [{}, {"method": "predict"}])
def test_automl_predict_answers_results_labels(server, local, records, params):
    answer = post(server, automl(records, **params))
    assert answer.status_code == 200
    assert answer.json() == {"Results": local.predict_records(records)["result"]}
    assert answer.headers["x-model-version"] == "7"


def test_automl_predict_proba_answers_a_probability_pair_per_record(server, local, records):
    answer = post(server, automl(records, method="predict_proba"))
    assert answer.status_code == 200
    body = answer.json()
    assert list(body) == ["Results"] and all(len(pair) == 2 for pair in body["Results"])
    p_yes = np.array(local.predict_records(records)["probabilities"])
    np.testing.assert_allclose(np.array(body["Results"]), np.column_stack([1 - p_yes, p_yes]), rtol=1e-12)


@pytest.mark.parametrize("columns, index", [(FEATURES, True), (FEATURES[::-1], False)])
def test_mlflow_input_data_answers_predictions(server, local, records, columns, index):
    answer = post(server, mlflow(records, columns, index))
    assert answer.status_code == 200
    assert answer.json() == {"predictions": local.predict_records(records)["result"]}


def test_empty_batches_answer_empty_lists_in_every_shape(server):
    assert post(server, {"data": []}).json() == {"result": [], "probabilities": [], "model_version": "7"}
    assert post(server, automl([])).json() == {"Results": []}
    assert post(server, mlflow([])).json() == {"predictions": []}


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("change, message", [
    ({"age": "old"}, "record 1: column 'age' must be a number, got \"old\""),
    ({"job": 7}, "record 1: column 'job' must be a string, got a number"),
    ({"euribor3m": None}, "record 1: column 'euribor3m' must be a number, got null"),
])
def test_every_format_validates_records_the_same_way(server, records, change, message):
    bad = [records[0], {**records[1], **change}]
    for body in ({"data": bad}, automl(bad), automl(bad, method="predict_proba"), mlflow(bad)):
        answer = post(server, body)
        assert answer.status_code == 400 and answer.json() == {"error": message}


def test_a_missing_column_is_named_in_every_format(server, records):
    columns = [c for c in FEATURES if c != "pdays"]
    short = [{c: r[c] for c in columns} for r in records[:2]]
    for body in ({"data": short}, automl(short), mlflow(short, columns)):
        assert post(server, body).json() == {"error": "record 0: column 'pdays' is missing"}


@pytest.mark.parametrize("body, message", [
    ({"Inputs": [1]}, '`Inputs` must be an object {"data": [records]}, got an array'),
    ({"Inputs": {"records": []}}, '`Inputs` has no `data` field; expected {"Inputs": {"data": [{column: value, '
                                  '...}]}}'),
    ({"Inputs": {"data": {}}}, "`Inputs.data` must be a list of records, got an object"),
    ({"Inputs": {"data": []}, "GlobalParameters": {"method": "classify"}},
     '`GlobalParameters.method` must be "predict" or "predict_proba", got "classify"'),
    ({"Inputs": {"data": []}, "GlobalParameters": "predict"}, "`GlobalParameters` must be an object, got a string"),
    ({"input_data": [[1, 2]]}, '`input_data` must be an object {"columns": [...], "data": [[...]]} (split '
                               "orientation), got an array"),
    ({"input_data": {"data": [[1]]}}, "`input_data.columns` must be a list of column names"),
    ({"input_data": {"columns": ["age"], "data": {"age": 1}}}, "`input_data.data` must be a list of rows, got an "
                                                               "object"),
    ({"input_data": {"columns": ["age"], "data": [[1], [2]], "index": [0]}},
     "`input_data.index` must be a list with one entry per row (2)"),
    ({"input_data": {"columns": ["age", "job"], "data": [[1, "x"], [2]]}},
     "record 1 has 1 values but `input_data.columns` names 2"),
    ({"input_data": {"columns": ["age"], "data": [{"age": 1}]}},
     "record 0 must be an array of values in `input_data.columns` order, got an object"),
    ({"data": [], "input_data": {}}, "request body has `data` and `input_data`; send exactly one format"),
    ({"GlobalParameters": {"method": "predict"}},
     f"request body has no `data`, `Inputs` or `input_data` field; expected {FORMATS_HINT}"),
])
def test_malformed_requests_are_400_with_a_precise_message(server, body, message):
    answer = post(server, body)
    assert answer.status_code == 400 and answer.json() == {"error": message}


def test_every_format_needs_the_scoring_key(server, records):
    for body in ({"data": records[:1]}, automl(records[:1]), mlflow(records[:1])):
        for key in (None, ADMIN_KEY, "nope"):
            answer = post(server, body, key=key)
            assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
            assert SCORING_KEY not in answer.text and ADMIN_KEY not in answer.text


def test_only_post_is_allowed_on_score(server):
    answer = requests.get(server.url + "/score", timeout=10)
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"


# -------------------------------------------------------------------------------------------- swagger


def test_swagger_describes_the_three_formats_and_their_answers(server, records):
    doc = requests.get(server.url + "/swagger.json", timeout=10).json()
    defs = doc["definitions"]
    service_input = defs["ServiceInput"]
    assert set(service_input["properties"]) == {"data", "Inputs", "GlobalParameters", "input_data"}
    assert defs["AutoMLInput"]["properties"]["GlobalParameters"]["properties"]["method"]["enum"] == [
        "predict", "predict_proba"]
    assert defs["MLflowInput"]["required"] == ["input_data"]
    assert set(defs["MLflowInput"]["properties"]["input_data"]["properties"]) == {"columns", "index", "data"}
    assert set(defs["ServiceOutput"]["properties"]) == {"result", "probabilities", "model_version", "Results",
                                                        "predictions"}
    assert list(defs["AutoMLOutput"]["properties"]) == ["Results"]
    assert list(defs["MLflowOutput"]["properties"]) == ["predictions"]
    # every example in the document is a request the server accepts, answered in the documented shape
    examples = service_input["x-examples"]
    for name, output in (("data", "DataOutput"), ("automl", "AutoMLOutput"), ("mlflow", "MLflowOutput")):
        answer = post(server, examples[name])
        assert answer.status_code == 200, answer.text
        assert set(answer.json()) == set(defs[output]["properties"])
