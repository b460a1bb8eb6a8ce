"""The scoring runtime and the local scoring endpoint, served by a real uvicorn process on a loopback port.

Every server test gets the state it needs from a fixture, so each passes alone and in any order: `server`
never has a model (the module's tests that use it deploy nothing), `serving` has v1 from its start, and tests
that deploy get a fresh server of their own (`fresh`, or `v2_serving`: v1 then v2 deployed).
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
import requests

from local.processes import python_argv, start_on_free_ports
from local.scoring_server import create_app
from shared.domain import schema
from shared.jobs.training.mlflow_model import save_model
from shared.jobs.training.train import train
from shared.scoring.model_digest import folder_digest
from shared.scoring.payloads import mlflow_request
from shared.scoring.runtime import DIRECT_PATH_MAX_ROWS, ModelLoadError, ScoringInputError, ScoringModel
from tests.waiting import wait_for

SCORING_KEY = "score-key-3f9a1c"
ADMIN_KEY = "admin-key-77d0e2"


@pytest.fixture(scope="module")
def models(small_bank_csv, tmp_path_factory):
    """Two small, quickly trained models (different seeds) and a directory that looks like a model but is not."""
    root = tmp_path_factory.mktemp("models")
    frame = pd.read_csv(small_bank_csv)
    dirs = {}
    for name, seed in (("a", 1), ("b", 2)):
        result = train(frame, budget_s=10, seed=seed, max_iter=3, n_jobs=1)  # no OpenMP spinning on a busy box
        dirs[name] = save_model(result, root / name, dataset_version=name, dataset_hash="h", run_id=name)
    broken = root / "broken" / "model"
    broken.mkdir(parents=True)
    (broken / "MLmodel").write_text((dirs["a"] / "MLmodel").read_text())
    (broken / "model.pkl").write_bytes(b"this is not a pickle")
    dirs["broken"] = broken
    return dirs


@pytest.fixture(scope="module")
def records(small_bank_csv) -> list[dict]:
    frame = pd.read_csv(small_bank_csv, nrows=400)
    return frame[list(schema.FEATURES)].to_dict(orient="records")


def scoring_server(logs, models):
    """A real scoring server process on a loopback port, stopped when the fixture ends."""
    root = models["a"].parent.parent  # every model folder of this module lies under it
    child, (port,) = start_on_free_ports(
        "scoring", 1, lambda ports: python_argv("local.scoring_server", "--port", str(ports[0]), "--models-root",
                                                str(root)),
        log_dir=logs, env={"SCORING_KEY": SCORING_KEY, "SCORING_ADMIN_KEY": ADMIN_KEY})
    try:
        yield {"url": f"http://127.0.0.1:{port}", "log": child.log_path}
    finally:
        child.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, models):
    """Shared, and never given a model: the tests that use it deploy nothing."""
    yield from scoring_server(tmp_path_factory.mktemp("scoring"), models)


@pytest.fixture(scope="module")
def serving(tmp_path_factory, models):
    """Shared, serving model a as v1 from its start; the tests that use it only score."""
    for started in scoring_server(tmp_path_factory.mktemp("serving"), models):
        answer = deploy(started, models["a"], "1")
        assert answer.status_code == 200, answer.text
        yield started


@pytest.fixture
def fresh(tmp_path, models):
    """A server of this test's own, nothing deployed."""
    yield from scoring_server(tmp_path, models)


@pytest.fixture
def v2_serving(fresh, models, records):
    """A server of this test's own that has served v1 (model a) and now serves v2 (model b)."""
    for model, version in ((models["a"], "1"), (models["b"], "2")):
        answer = deploy(fresh, model, version)
        assert answer.status_code == 200, answer.text
    return fresh


def score(server, body, key=SCORING_KEY, **kwargs):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, bytes | str):  # raw bytes, still declared as JSON (the deployment wants the header)
        headers["Content-Type"] = "application/json"
        return requests.post(server["url"] + "/score", data=body, headers=headers, timeout=30, **kwargs)
    return requests.post(server["url"] + "/score", json=body, headers=headers, timeout=30, **kwargs)


def split(records) -> dict:
    """The body an Azure ML no-code MLflow deployment reads (the one scoring format)."""
    return mlflow_request(records)


def predictions(labels) -> list[int]:
    return [int(label == "yes") for label in labels]


def deploy(server, model_dir, version, key=ADMIN_KEY, **extra):
    """With the folder's own digest (what the registry records), or a well-formed one for a missing folder."""
    digest = folder_digest(model_dir) if model_dir.is_dir() else "sha256:" + "0" * 64
    body = {"model_dir": str(model_dir), "version": version, "digest": digest, **extra}
    return requests.post(server["url"] + "/admin/deploy", json=body, headers={"Authorization": f"Bearer {key}"},
                         timeout=120)


# --------------------------------------------------------------------------------------------- runtime


def test_runtime_matches_the_pipeline_and_uses_the_direct_path(models, records):
    model = ScoringModel.load(models["a"], "1")
    assert model.direct_path and model.features == list(schema.FEATURES)
    frame = pd.DataFrame(records)
    expected = model.pipeline.predict_proba(frame)[:, 1]
    small = model.predict_records(records[:DIRECT_PATH_MAX_ROWS])  # direct path
    large = model.predict_records(records)  # over the limit: through the sklearn pipeline
    np.testing.assert_allclose(small["probabilities"], expected[:DIRECT_PATH_MAX_ROWS], rtol=1e-12)
    np.testing.assert_allclose(large["probabilities"], expected, rtol=1e-12)
    assert large["result"] == ["yes" if p > model.threshold else "no" for p in expected]
    assert model.predict_records([]) == {"result": [], "probabilities": []}
    assert model.smoke() == {"rows": 5, "ok": True}


def test_runtime_accepts_equivalent_values_and_ignores_extra_keys(models, records):
    model = ScoringModel.load(models["a"], "1")
    base = model.predict_records(records[:1])["probabilities"][0]
    variant = {**records[0], "age": float(records[0]["age"]), "duration": str(records[0]["duration"]),
               "extra": "ignored", schema.TARGET: "yes"}
    assert model.predict_records([variant])["probabilities"][0] == pytest.approx(base, rel=1e-12)
    unseen = model.predict_records([{**records[0], "job": "astronaut"}])
    assert 0.0 <= unseen["probabilities"][0] <= 1.0


@pytest.mark.parametrize("change, message", [
    ({"age": None}, "record 1: column 'age' must be a number, got null"),
    ({"age": 41.5}, "record 1: column 'age' must be an integer, got 41.5"),
    ({"age": True}, "record 1: column 'age' must be a number, got a boolean"),
    ({"duration": "long"}, "record 1: column 'duration' must be a number, got \"long\""),
    ({"euribor3m": float("nan")}, "record 1: column 'euribor3m' must be a finite number"),
    ({"job": 3}, "record 1: column 'job' must be a string, got a number"),
    ({"month": None}, "record 1: column 'month' must be a string, got null"),
])
def test_runtime_names_the_record_and_column(models, records, change, message):
    model = ScoringModel.load(models["a"], "1")
    with pytest.raises(ScoringInputError) as info:
        model.predict_records([records[0], {**records[1], **change}])
    assert str(info.value) == message
    assert info.value.index == 1 and info.value.column == next(iter(change))


def test_runtime_reports_missing_columns_and_non_objects(models, records):
    model = ScoringModel.load(models["a"], "1")
    missing = {k: v for k, v in records[0].items() if k != "pdays"}
    with pytest.raises(ScoringInputError, match=r"^record 0: column 'pdays' is missing$"):
        model.predict_records([missing])
    with pytest.raises(ScoringInputError, match=r"^record 2 must be a JSON object .* got an array$"):
        model.predict_records([records[0], records[1], [1, 2]])


def test_runtime_refuses_what_is_not_a_model(models, tmp_path):
    with pytest.raises(ModelLoadError, match="not an MLflow model directory"):
        ScoringModel.load(tmp_path, "9")
    with pytest.raises(ModelLoadError, match="cannot load the model"):
        ScoringModel.load(models["broken"], "9")


def test_create_app_needs_both_keys():
    with pytest.raises(ValueError, match="both a scoring key and an admin key"):
        create_app("", ADMIN_KEY)


# ---------------------------------------------------------------------------------------------- server


def test_before_any_deploy_health_is_ok_and_score_is_404(server, records):
    """Learn, troubleshoot online endpoints: 404 when "the endpoint doesn't have any valid deployment with
    positive weight"."""
    for path in ("/", "/health"):
        answer = requests.get(server["url"] + path, timeout=10)
        assert answer.status_code == 200 and answer.json() == {"status": "ok", "model_version": None}
    answer = score(server, split(records[:1]))
    assert answer.status_code == 404 and "no model deployed yet" in answer.json()["error"]


@pytest.mark.parametrize("key", [None, "wrong-key", ADMIN_KEY, f"{SCORING_KEY}x", ""])
def test_score_without_the_scoring_key_is_401(server, records, key):
    answer = score(server, split(records[:1]), key=key)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert SCORING_KEY not in answer.text and ADMIN_KEY not in answer.text


def test_basic_scheme_or_raw_key_is_401(server, records):
    for header in (f"Basic {SCORING_KEY}", SCORING_KEY, f"Bearer{SCORING_KEY}"):
        answer = requests.post(server["url"] + "/score", json=split(records[:1]),
                               headers={"Authorization": header}, timeout=10)
        assert answer.status_code == 401


def test_deploy_needs_the_admin_key(server, models):
    assert deploy(server, models["a"], "1", key=SCORING_KEY).status_code == 401
    assert requests.post(server["url"] + "/admin/deploy", json={}, timeout=10).status_code == 401


def test_swagger_describes_the_score_input(server):
    answer = requests.get(server["url"] + "/swagger.json", timeout=10)
    assert answer.status_code == 200
    doc = answer.json()
    assert doc["swagger"] == "2.0"
    post = doc["paths"]["/score"]["post"]
    assert post["parameters"][0]["schema"] == {"$ref": "#/definitions/ServiceInput"}
    assert doc["securityDefinitions"]["Bearer"]["name"] == "Authorization"
    service_input = doc["definitions"]["ServiceInput"]
    assert service_input["required"] == ["input_data"] and set(service_input["properties"]) == {"input_data", "params"}
    frame = service_input["properties"]["input_data"]
    assert frame["format"] == "pandas.DataFrame:split" and frame["required"] == ["columns", "data"]
    assert frame["properties"]["columns"]["items"]["enum"] == list(schema.FEATURES)
    cells = frame["properties"]["data"]["items"]["x-column-types"]
    assert cells[list(schema.FEATURES).index("age")] == {"type": "integer", "format": "int64"}
    assert cells[list(schema.FEATURES).index("euribor3m")] == {"type": "number", "format": "double"}
    example = service_input["example"]["input_data"]
    assert example["columns"] == list(schema.FEATURES) and len(example["data"][0]) == len(schema.FEATURES)
    assert doc["definitions"]["ServiceOutput"]["items"]["enum"] == [0, 1]
    assert "424" in post["responses"] and doc["definitions"]["ErrorResponse"]["properties"] == {
        "message": {"type": "string"}}


def test_deploy_then_score(fresh, models, records):
    server = fresh
    answer = deploy(server, models["a"], "1")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["deployed"] == "1" and body["previous"] is None and body["smoke"] == {"rows": 5, "ok": True}
    assert body["slot"] == "blue" and body["previous_slot"] is None
    assert requests.get(server["url"] + "/health", timeout=10).json() == {"status": "ok", "model_version": "1"}

    scored = score(server, split(records[:3]))
    assert scored.status_code == 200, scored.text
    assert scored.headers["azureml-model-deployment"] == "blue"
    local = ScoringModel.load(models["a"], "1").predict_records(records[:3])
    assert scored.json() == predictions(local["result"])

    empty = score(server, split([]))
    assert empty.status_code == 200 and empty.json() == []
    swagger = requests.get(server["url"] + "/swagger.json", timeout=10).json()
    example = swagger["definitions"]["ServiceInput"]["example"]["input_data"]
    assert dict(zip(example["columns"], example["data"][0], strict=True)) == local_example(models["a"])


def local_example(model_dir):
    return ScoringModel.load(model_dir, "x").input_example[0]


RUN_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "POST body could not be decoded as JSON: Expecting property name enclosed in double quotes: "
                        "line 1 column 2 (char 1)"),
    (b"", 400, "POST body is empty. Expecting a JSON dictionary."),
    (b"[1, 2]", 400, "POST body should be a JSON dictionary."),
    ({"inputs": []}, 400, "A value is not provided for the 'input_data' parameter."),
    ({"data": [{"age": 1}]}, 400, "A value is not provided for the 'input_data' parameter."),
    ({"input_data": [[1, 2]]}, 500, RUN_FAILED),
    ({"input_data": {"columns": ["age"], "data": [1]}}, 500, RUN_FAILED),
])
def test_bad_requests_are_424_naming_the_deployments_answer(serving, body, status, message):
    """The inference server's own status and message (formats.py cites them), wrapped by the endpoint in 424."""
    answer = score(serving, body)
    assert answer.status_code == 424
    assert answer.headers["ms-azureml-model-error-statuscode"] == str(status)
    assert answer.headers["ms-azureml-model-error-reason"] == "model_error"
    assert answer.json() == {"message": message}


def test_bad_records_fail_in_the_scoring_script(serving, records):
    """A value of the wrong type or a missing column fails run() (500 inside, 424 outside), and the
    local log says which record and column, as Azure's container log does."""
    server = serving
    bad = [records[0], {**records[1], "duration": "long"}]
    answer = score(server, split(bad))
    assert (answer.status_code, answer.headers["ms-azureml-model-error-statuscode"]) == (424, "500")
    assert answer.json() == {"message": RUN_FAILED}
    missing = {k: v for k, v in records[0].items() if k != "nr.employed"}
    answer = score(server, split([missing]))
    assert (answer.status_code, answer.json()) == (424, {"message": RUN_FAILED})


def test_large_batches_are_scored_too(serving, records):
    server = serving
    answer = score(server, split(records))
    assert answer.status_code == 200 and len(answer.json()) == len(records)


def test_redeploy_while_scoring_never_fails_a_request(fresh, models, records):
    server = fresh
    assert deploy(server, models["a"], "1").status_code == 200
    failures: list[str] = []
    versions: list[str] = []
    stop = threading.Event()

    def keep_scoring():
        session = requests.Session()
        i = 0
        while not stop.is_set():
            batch = records[i % 50: i % 50 + 1 + i % 3]
            i += 1
            try:
                answer = session.post(server["url"] + "/score", json=split(batch),
                                      headers={"Authorization": f"Bearer {SCORING_KEY}"}, timeout=30)
                if answer.status_code != 200 or len(answer.json()) != len(batch):
                    failures.append(f"{answer.status_code}: {answer.text[:200]}")
                else:
                    versions.append(answer.headers["azureml-model-deployment"])
            except requests.RequestException as exc:
                failures.append(repr(exc))

    clients = [threading.Thread(target=keep_scoring) for _ in range(2)]
    for client in clients:
        client.start()
    try:
        wait_for(lambda: len(versions) >= 20, timeout=30, what="twenty answers from v1 (blue)")
        answer = deploy(server, models["b"], "2", smoke_records=records[:10])
        wait_for(lambda: versions.count("green") >= 10, timeout=30, what="ten answers from v2 (green)")
    finally:
        stop.set()
        for client in clients:
            client.join(30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["deployed"] == "2" and answer.json()["previous"] == "1"
    assert answer.json()["smoke"] == {"rows": 10, "ok": True}
    assert answer.json()["slot"] == "green" and answer.json()["previous_slot"] == "blue"
    assert failures == []
    assert set(versions) == {"blue", "green"}
    first_two = versions.index("green")
    assert len(versions) > 20 and "blue" in versions[:first_two]
    assert score(server, split(records[:1])).headers["azureml-model-deployment"] == "green"


def test_broken_model_is_refused_and_the_old_one_keeps_serving(v2_serving, models, records):
    server = v2_serving
    answer = deploy(server, models["broken"], "3")
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"].startswith("model v3 not deployed: cannot load the model") and body["serving"] == "2"

    answer = deploy(server, models["broken"].parent / "missing", "4")
    assert answer.status_code == 403 and "does not exist" in answer.json()["error"]
    assert answer.json()["reason"] == "not_a_model" and answer.json()["serving"] == "2"

    bad_smoke = [{k: v for k, v in records[0].items() if k != "age"}]
    answer = deploy(server, models["a"], "5", smoke_records=bad_smoke)
    assert answer.status_code == 422
    assert answer.json()["error"] == "model v5 not deployed: record 0: column 'age' is missing"

    answer = score(server, split(records[:2]))
    assert answer.status_code == 200 and answer.headers["azureml-model-deployment"] == "green"
    assert requests.get(server["url"] + "/health", timeout=10).json()["model_version"] == "2"


@pytest.mark.parametrize("body, message", [
    ({"model_dir": "relative/model", "version": "6"}, "`model_dir` must be an absolute path"),
    ({"model_dir": "/abs/model"}, "`version` must be a non-empty string or integer"),
    ({"model_dir": "/abs/model", "version": "6", "smoke_records": {}}, "`smoke_records` must be a list"),
])
def test_malformed_deploy_requests_are_400(server, body, message):
    answer = requests.post(server["url"] + "/admin/deploy", json=body,
                           headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"].startswith(message)


def test_keys_never_reach_the_log(v2_serving):
    server = v2_serving
    text = server["log"].read_text(errors="replace")
    assert "deployed model v2" in text
    assert SCORING_KEY not in text and ADMIN_KEY not in text
    assert json.dumps(SCORING_KEY) not in text
