"""The read API through the local Functions host running the real app (main.py) over real HTTP, against a real
Azurite: GET /api/models, /api/health, /api/openapi.json, /api/docs, /api/runs?limit=; 405 problem documents for
the other methods. And the health check's storage probe against Azurite itself."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from azure.data.tables import TableServiceClient
from pytest_httpserver import HTTPServer

from local.functions_host.keys import HostKeys, load_or_create_keys
from local.processes import PROJECT_ROOT, Child, free_port, python_argv, start_on_free_ports
from local.stack_secrets import new_storage_key
from shared.api import openapi
from shared.bootstrap import build_stores
from shared.services import health
from shared.settings import AZURITE_ACCOUNT, Settings, azurite_connection_string
from tests.unit.test_openapi import validator as doc_validator
from tests.waiting import wait_for

PIPELINE_PATH = "/jobs"  # the batch endpoint's invocation URL (PIPELINE_KIND=batch-endpoint, the default)
WORKSPACE_ID = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
NEVER = "0 0 0 1 1 *"  # timers: once a year, not during the tests
GET_ROUTES = ["/api/runs", "/api/runs/some-run", "/api/models", "/api/health", "/api/openapi.json", "/api/docs"]
SECURED = {"/api/runs", "/api/runs/some-run", "/api/models"}


@dataclass
class AppHost:
    child: Child
    url: str
    keys: HostKeys
    env: dict

    @property
    def key(self) -> dict:
        return {"x-functions-key": self.keys.function_keys["default"]}

    def stores(self):
        return build_stores(Settings(storage_connection=self.env["AzureWebJobsStorage"],
                                     runs_table=self.env["RUNS_TABLE"], models_table=self.env["MODELS_TABLE"],
                                     audit_table=self.env["AUDIT_TABLE"], datasets_table=self.env["DATASETS_TABLE"]))


def start_app_host(log_dir: Path, name: str, *, storage: str, pipeline_url: str) -> AppHost:
    """`python -m local.functions_host` on the project itself (main.py), with its own tables and containers."""
    local_dir = log_dir / "local"
    keys = load_or_create_keys(local_dir)
    tag = uuid.uuid4().hex[:8]
    env = {"FUNCTIONS_WORKER_RUNTIME": "python", "PYTHON_SCRIPT_FILE_NAME": "main.py", "AzureWebJobsStorage": storage,
           "AzureFunctionsJobHost__id": f"api-{tag}", "RETRAIN_MODE": "local", "RETRAIN_LOCAL_DIR": str(local_dir),
           "PIPELINE_ENDPOINT_URL": pipeline_url, "AZUREML_WORKSPACE_ID": WORKSPACE_ID,
           "DRIFT_SCHEDULE": NEVER, "RECONCILE_SCHEDULE": NEVER,
           "INCOMING_CONTAINER": f"in{tag}", "RUNS_TABLE": f"runs{tag}", "MODELS_TABLE": f"models{tag}",
           "AUDIT_TABLE": f"audit{tag}", "DATASETS_TABLE": f"datasets{tag}", "WEBHOOK_TABLE": f"webhook{tag}",
           "LOCAL_PIPELINE_TOKEN": "test-pipeline-token", "SCORING_KEY": "test-scoring-key",
           "SCORING_ADMIN_KEY": "test-scoring-admin-key", "BLOB_TRIGGER_POLL_S": "2",
           "FUNCTIONS_HOST_SHUTDOWN_TIMEOUT_S": "5"}
    child, (port,) = start_on_free_ports(
        name, 1, lambda ports: python_argv("local.functions_host", "--script-root", str(PROJECT_ROOT), "--port",
                                           str(ports[0])),
        log_dir=log_dir, env=env)
    return AppHost(child, f"http://127.0.0.1:{port}", keys, env)


@pytest.fixture(scope="module")
def pipeline():
    """Stands in for the pipeline endpoint: answers the health check's HEAD as Azure ML would (not a 5xx)."""
    server = HTTPServer(host="127.0.0.1", port=0)  # bound at start: its port is taken at once
    server.expect_request(PIPELINE_PATH).respond_with_data("", status=405)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture(scope="module")
def host(azurite, pipeline, tmp_path_factory):
    h = start_app_host(tmp_path_factory.mktemp("api-host"), "functions-host-api", storage=azurite,
                       pipeline_url=pipeline.url_for(PIPELINE_PATH))
    yield h
    h.child.stop()


def validator(name: str):
    return doc_validator(openapi.document(), name)


# anonymous: health, the document, the docs page -------------------------------------------------------------------
def test_health_needs_no_key_and_is_ok_when_storage_and_the_pipeline_answer(host, pipeline):
    def probed():
        """An answer made now, not one cached (5 s) from another test's call: the endpoint got a request."""
        count = len(pipeline.log)
        got = requests.get(host.url + "/api/health", timeout=15)
        return (got, count) if len(pipeline.log) > count else None

    answer, before = wait_for(probed, timeout=30, every=0.5, what="a health answer that probed the pipeline")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    validator("Health").validate(body)
    assert body["status"] == "ok"
    assert body["checks"]["storage"]["ok"] is True and body["checks"]["pipeline"]["ok"] is True
    assert all(isinstance(c["ms"], int) for c in body["checks"].values())
    probe, _ = pipeline.log[before]
    assert probe.method == "HEAD" and "Authorization" not in probe.headers  # no credentials to the endpoint
    # a second call within a few seconds reuses the answer: no new request to the endpoint
    assert requests.get(host.url + "/api/health", timeout=15).json() == body
    assert len(pipeline.log) == before + 1


def test_the_openapi_document_and_the_docs_need_no_key(host):
    document = requests.get(host.url + "/api/openapi.json", timeout=10)
    assert document.status_code == 200
    assert document.headers["content-type"].startswith("application/json")
    assert document.content == openapi.document_bytes()
    docs = requests.get(host.url + "/api/docs", timeout=10)
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "url: '/api/openapi.json'" in docs.text
    assert "content-security-policy" in docs.headers


# function key: models and runs -------------------------------------------------------------------------------------
def test_models_needs_a_key_and_lists_every_version_with_the_live_one(host):
    url = host.url + "/api/models"
    assert requests.get(url, timeout=10).status_code == 401
    empty = requests.get(url, headers=host.key, timeout=30)
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"models": [], "live": None}
    models = host.stores().models
    first = models.register(run_id="run-a", dataset_version=1, model_dir="/models/1", metrics={"auc": 0.91})
    second = models.register(run_id="run-b", dataset_version=2, model_dir="/models/2",
                             metrics={"auc": 0.93, "f1": 0.55})
    models.set_live(second.version)
    answer = requests.get(url, params={"code": host.keys.function_keys["default"]}, timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    validator("ModelList").validate(body)
    assert body["live"] == second.version
    assert [(m["version"], m["run_id"], m["dataset_version"], m["live"]) for m in body["models"]] == [
        (first.version, "run-a", 1, False), (second.version, "run-b", 2, True)]
    assert body["models"][1]["metrics"] == {"auc": 0.93, "f1": 0.55}
    assert body["models"][0]["registered_at"] == pytest.approx(first.registered_at)
    assert "model_dir" not in body["models"][0]


@pytest.mark.parametrize("limit", ["0", "abc", "501", "", "2.5"])
def test_a_runs_limit_outside_1_to_500_is_a_400_problem(host, limit):
    answer = requests.get(host.url + "/api/runs", params={"limit": limit}, headers=host.key, timeout=10)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    validator("Problem").validate(problem)
    assert "'limit'" in problem["detail"] and "from 1 to 500" in problem["detail"]


def test_runs_with_a_valid_limit(host):
    answer = requests.get(host.url + "/api/runs", params={"limit": "500", "status": "deployed"}, headers=host.key,
                          timeout=30)
    assert answer.status_code == 200, answer.text
    validator("RunList").validate(answer.json())
    missing = requests.get(host.url + "/api/runs/no-such-run", headers=host.key, timeout=10)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")


# 405 ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", GET_ROUTES)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_other_methods_are_405_problems_with_allow(host, path, method):
    answer = requests.request(method, host.url + path, headers=host.key, data=b"{}", timeout=10)
    assert answer.status_code == 405, answer.text
    assert answer.headers["allow"] == "GET"
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    validator("Problem").validate(problem)
    assert problem["detail"] == f"{method} is not allowed on {path}; use GET"


@pytest.mark.parametrize("path", sorted(SECURED))
def test_without_a_key_a_secured_route_is_401_whatever_the_method(host, path):
    """The host checks the key before the function runs: a caller without one learns nothing about the route."""
    for method in ("GET", "DELETE"):
        answer = requests.request(method, host.url + path, timeout=10)
        assert answer.status_code == 401 and answer.content == b""


# health when nothing answers ---------------------------------------------------------------------------------------
def test_health_is_503_degraded_when_storage_and_the_pipeline_are_down(tmp_path_factory):
    """Storage down at cold start: services() cannot be built, yet health answers (503, not 500), and says why in
    a word, not with the addresses it tried."""
    dead_storage, dead_pipeline = free_port(), free_port()
    h = start_app_host(tmp_path_factory.mktemp("api-host-down"), "functions-host-down",
                       storage=azurite_connection_string(AZURITE_ACCOUNT, new_storage_key(), blob=dead_storage,
                                                         queue=dead_storage, table=dead_storage),
                       pipeline_url=f"http://127.0.0.1:{dead_pipeline}{PIPELINE_PATH}")
    try:
        answer = requests.get(h.url + "/api/health", timeout=30)
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        body = answer.json()
        validator("Health").validate(body)
        assert body["status"] == "degraded"
        assert body["checks"]["storage"] == {"ok": False, "ms": body["checks"]["storage"]["ms"],
                                             "detail": "unreachable"}
        assert body["checks"]["pipeline"]["detail"] == "unreachable"
        for leak in ("127.0.0.1", str(dead_storage), str(dead_pipeline), "devstoreaccount1", "AccountKey",
                     "pipelines", "http:"):
            assert leak not in answer.text
    finally:
        h.child.stop()


# the storage probe against Azurite ---------------------------------------------------------------------------------
def test_the_storage_probe_against_azurite(azurite):
    tables = TableServiceClient.from_connection_string(azurite)
    existing = tables.create_table_if_not_exists(f"probe{uuid.uuid4().hex[:8]}")
    missing = tables.get_table_client(f"nope{uuid.uuid4().hex[:8]}")
    # a missing entity, even a missing table, is storage answering
    assert health.check_storage(health.table_probe(existing))["ok"] is True
    assert health.check_storage(health.table_probe(missing))["ok"] is True


def test_the_storage_probe_with_a_wrong_key_is_unauthorized(azurite):
    wrong = re.sub(r"AccountKey=[^;]+", "AccountKey=" + "QUJD" * 22, azurite)
    table = TableServiceClient.from_connection_string(wrong).get_table_client("runs")
    check = health.check_storage(health.table_probe(table))
    assert check == {"ok": False, "ms": check["ms"], "detail": "unauthorized"}
    assert "devstoreaccount1" not in json.dumps(check)


def test_the_storage_probe_on_a_closed_port_is_unreachable_at_once():
    port = free_port()
    table = TableServiceClient.from_connection_string(
        azurite_connection_string(AZURITE_ACCOUNT, new_storage_key(), blob=port, queue=port,
                                  table=port)).get_table_client("runs")
    check = health.check_storage(health.table_probe(table))
    assert check["ok"] is False and check["detail"] == "unreachable"
    # one try, not the SDK's default retries: how long it takes is measured by bench/timings.py


# the answers conform to the document -------------------------------------------------------------------------------
OWN_OPERATIONS = {"/api/runs", "/api/runs/{id}", "/api/models", "/api/health", "/api/openapi.json", "/api/docs"}


def test_what_the_read_routes_answer_conforms_to_the_document(host):
    """schemathesis generates requests for the read operations from the served document (limit and status
    included, valid or not), sends them to the host with the function key and checks every answer against it."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    # from the served document (from_url would leave out the document's own operation)
    schema = schemathesis.openapi.from_dict(requests.get(host.url + "/api/openapi.json", timeout=10).json())
    operations = [r.ok() for r in schema.get_all_operations() if r.ok().path in OWN_OPERATIONS]
    assert {o.path for o in operations} == OWN_OPERATIONS
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              response_headers_conformance]
    seen: set[tuple[str, int]] = set()

    @settings(max_examples=40, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def conforms(data):
        for operation in operations:
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                if mode is schemathesis.GenerationMode.NEGATIVE and not operation.query:
                    continue  # nothing to break in a request without query parameters
                case = data.draw(operation.as_strategy(generation_mode=mode))
                response = case.call(base_url=host.url, headers=host.key, timeout=30)
                case.validate_response(response, checks=checks, headers=host.key)
                seen.add((operation.path, response.status_code))

    conforms()
    assert ("/api/runs", 400) in seen and ("/api/runs", 200) in seen  # both sides of the limit were tried
