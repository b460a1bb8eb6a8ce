"""The local scoring endpoint collects as Azure ML's data collector does, and the drift check's reader reads it back.

Documented contract (https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data, "Store
collected data in Blob Storage" and "Collect data for MLflow models"): with collection on, the `model_inputs` and
`model_outputs` of a deployment go to
`modelDataCollector/{endpoint}/{deployment}/{collection}/{yyyy}/{MM}/{dd}/{HH}/{instance_id}.jsonl`, one JSON
envelope per line with the documented fields and the logged DataFrame as records in `data`. The outputs are what
Azure ML's MLflow scoring script logs, `pd.DataFrame(model.predict(...))` (Azure/azureml-assets,
assets/inference/environments/mlflow-py312-inference/context/mlflow_score_script.py).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime

import pandas as pd
import pytest
import requests
from azure.storage.blob import BlobServiceClient

from shared.adapters.inference_data import read_window
from shared.domain import schema
from tests.integration.test_scoring_bluegreen import SCORING_KEY, save_pipeline_model, scoring_server, serve_from_start
from tests.unit.test_collected_data import DOCUMENTED_FIELDS

ENDPOINT = "parity-endpoint"
BLOB = re.compile(rf"^modelDataCollector/{ENDPOINT}/(?P<deployment>[^/]+)/(?P<collection>model_inputs|model_outputs)/"
                  r"(?P<hour>\d{4}/\d{2}/\d{2}/\d{2})/[0-9a-f-]{36}\.jsonl$")
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@pytest.fixture(scope="module")
def collected(azurite, tmp_path_factory, bank_csv):
    """Three answered requests (4 rows each) and one refused, through a real local endpoint; then it stops, which
    writes what its collector holds."""
    frame = pd.read_csv(bank_csv, nrows=800)
    model = save_pipeline_model(tmp_path_factory.mktemp("collect-model") / "m", frame, seed=4)
    container = f"collect{uuid.uuid4().hex[:8]}"
    started = time.time()
    server = scoring_server(tmp_path_factory.mktemp("collect-scoring"), *serve_from_start(model, "3"),
                            "--collect-container", container, "--endpoint-name", ENDPOINT,
                            env_extra={"INFERENCE_STORAGE": azurite})
    endpoint = next(server)
    rows = frame[list(schema.FEATURES)].head(4)
    # The documented MLflow request: input_data in pandas' split orientation.
    body = {"input_data": json.loads(rows.to_json(orient="split"))}
    headers = {"Authorization": f"Bearer {SCORING_KEY}"}
    answers, deployments = [], set()
    try:
        for _ in range(3):
            response = requests.post(endpoint.url + "/score", json=body, headers=headers, timeout=10)
            assert response.status_code == 200
            answers.append(response.json())
            deployments.add(response.headers["azureml-model-deployment"])
        refused = {"input_data": {"columns": ["age"], "index": [0], "data": [["old"]]}}
        assert requests.post(endpoint.url + "/score", json=refused, headers=headers, timeout=10).status_code != 200
    finally:
        next(server, None)
    blobs = BlobServiceClient.from_connection_string(azurite).get_container_client(container)
    return {"blobs": blobs, "started": started, "ended": time.time(), "rows": rows, "answers": answers,
            "deployments": deployments}


def lines_of(collected, collection: str) -> list[tuple[re.Match, dict]]:
    out = []
    for blob in collected["blobs"].list_blobs():
        match = BLOB.match(blob.name)
        assert match, f"{blob.name} is not in the collector's layout"
        if match["collection"] == collection:
            text = collected["blobs"].download_blob(blob.name).readall().decode()
            out += [(match, json.loads(line)) for line in text.splitlines()]
    return out


@pytest.mark.parametrize("collection", ["model_inputs", "model_outputs"])
def test_each_line_is_the_documented_envelope_in_its_deployment_and_hour_folder(collected, collection):
    lines = lines_of(collected, collection)
    assert len(lines) == 3  # one per answered request; the refused one is not collected
    for match, line in lines:
        assert set(line) == DOCUMENTED_FIELDS
        assert match["deployment"] in collected["deployments"]
        assert (line["specversion"], line["datacontenttype"]) == ("1.0", "application/json")
        assert line["type"] == f"azureml.inference.{collection}"
        assert line["source"].endswith(f"/onlineEndpoints/{ENDPOINT}/deployments/{match['deployment']}")
        assert TIME.match(line["time"])
        assert datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%SZ").strftime("%Y/%m/%d/%H") == match["hour"]
        size = len(json.dumps(line["data"], separators=(",", ":")).encode())
        assert line["contentrange"] == f"bytes 0-{size - 1}/{size}"
        assert line["correlationid"] == line["xrequestid"] and line["modelversion"] == "default"


def test_inputs_are_the_request_rows_and_outputs_the_answered_predictions(collected):
    inputs = {line["correlationid"]: line["data"] for _, line in lines_of(collected, "model_inputs")}
    outputs = {line["correlationid"]: line["data"] for _, line in lines_of(collected, "model_outputs")}
    assert inputs.keys() == outputs.keys()  # each request's two lines correlate
    expected = collected["rows"].to_dict(orient="records")
    assert all(rows == json.loads(json.dumps(expected)) for rows in inputs.values())
    assert sorted(json.dumps(v) for v in outputs.values()) == sorted(
        json.dumps([{"0": p} for p in answer]) for answer in collected["answers"])


def test_the_drift_reader_reads_the_window_back(collected):
    window = read_window(collected["blobs"], endpoint=ENDPOINT, since=collected["started"] - 1,
                         until=collected["ended"] + 1)
    assert list(window.columns) == list(schema.FEATURES) and len(window) == 12
    assert sorted(window["age"].tolist()) == sorted(collected["rows"]["age"].tolist() * 3)
    assert len(read_window(collected["blobs"], endpoint=ENDPOINT, since=collected["ended"] + 2)) == 0
