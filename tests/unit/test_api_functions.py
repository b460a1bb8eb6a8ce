"""The API's HTTP functions called in-process with func.HttpRequest, as the worker calls them: GET /api/runs,
/api/runs/{id}, /api/models, /api/health, /api/openapi.json, /api/docs; 405 for the other methods; and the
X-Forwarded-For header the local host adds when it converts a request for the worker."""

from __future__ import annotations

import json
from types import SimpleNamespace

import azure.functions as func
import pytest
from starlette.requests import Request

from function_app import API_METHODS, api_docs, health_http, models_http, runs_http
from local.functions_host.http_server import to_http_request
from shared.api import openapi
from shared.domain.records import ModelVersion, RunRecord
from shared.settings import SettingsError
from tests.unit.test_openapi import validator as doc_validator

SECRET_URL = "https://secretacct.blob.core.windows.net/?sig=TOPSECRETSIG"

# (module, function, url) for every GET route this module covers
GET_FUNCTIONS = [
    (runs_http, "runs_list", "/api/runs"),
    (runs_http, "runs_get", "/api/runs/r1"),
    (models_http, "models_list", "/api/models"),
    (health_http, "health", "/api/health"),
    (api_docs, "openapi_json", "/api/openapi.json"),
    (api_docs, "api_docs", "/api/docs"),
]


def validator(name: str):
    return doc_validator(openapi.document(), name)


def request(method: str, url: str, params: dict | None = None, route_params: dict | None = None):
    return func.HttpRequest(method=method, url=url, body=b"", params=params or {}, route_params=route_params or {})


def body(response: func.HttpResponse) -> dict:
    return json.loads(response.get_body())


class Runs:
    def __init__(self, runs):
        self._runs = {r.run_id: r for r in runs}

    def get(self, run_id):
        return self._runs.get(run_id)

    def list(self):
        return sorted(self._runs.values(), key=lambda r: r.submitted_at)

    def newest(self, limit, status=None):  # RunStore.newest: newest first, status case-insensitive, at most limit
        matching = [r for r in self.list() if status is None or r.status.lower() == status.lower()]
        return matching[::-1][:limit]


class Models:
    def __init__(self, models, live=None):
        self._models, self._live = models, live

    def list(self):
        return list(self._models)

    def live(self):
        return next((m for m in self._models if m.version == self._live), None)


def run(i: int, status: str = "Deployed") -> RunRecord:
    return RunRecord(run_id=f"r{i}", trigger_id=f"t{i}", trigger="blob", reason="upload", dataset_version=i,
                     experiment="e", submitted_at=1767225600.0 + i, status=status)


@pytest.fixture
def stub_services(monkeypatch):
    """services() for the run and model functions; it records whether it was called."""
    calls = []
    state = SimpleNamespace(runs=Runs([run(i, "Deployed" if i % 2 else "Failed") for i in range(1, 8)]),
                            models=Models([]), outbox=None, audit=None,
                            retrain=SimpleNamespace(target=SimpleNamespace(experiment="e")))

    def services():
        calls.append(1)
        return state

    for module in (runs_http, models_http):
        monkeypatch.setattr(module, "services", services)
    state.calls = calls
    return state


# 405 ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("module", "name", "url"), GET_FUNCTIONS)
@pytest.mark.parametrize("method", [m for m in API_METHODS if m != "GET"])
def test_other_methods_are_405_problems_with_allow(module, name, url, method, monkeypatch):
    def no_services():
        raise AssertionError("a refused method must not build services")

    monkeypatch.setattr(module, "services", no_services, raising=False)
    monkeypatch.setattr(health_http, "checker", no_services)
    response = getattr(module, name)(request(method, f"https://app.example{url}?code=KEYVALUE",
                                             route_params={"id": "r1"}))
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert response.headers["Allow"] == "GET"
    problem = body(response)
    validator("Problem").validate(problem)
    assert problem["status"] == 405 and problem["title"] == "Method Not Allowed"
    assert problem["detail"] == f"{method} is not allowed on {url}; use GET"  # the path, never the query (key)


def test_the_document_describes_405_on_every_route_answering_it():
    doc = openapi.document()
    for _, _, url in GET_FUNCTIONS:
        path = "/api/runs/{id}" if url.startswith("/api/runs/") else url
        assert doc["paths"][path]["get"]["responses"]["405"] == {"$ref": "#/components/responses/MethodNotAllowed"}


# GET /api/runs -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", ["0", "501", "abc", "", "1.5", "-1", "+5", " 5", "1e2", "5,6", "9" * 40])
def test_a_limit_that_is_not_an_integer_from_1_to_500_is_400(stub_services, limit):
    response = runs_http.runs_list(request("GET", "/api/runs", {"limit": limit}))
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    problem = body(response)
    validator("Problem").validate(problem)
    assert "'limit'" in problem["detail"] and "from 1 to 500" in problem["detail"]
    assert problem["invalid_params"] == [{"name": "limit", "reason": "must be an integer from 1 to 500"}]
    assert len(problem["detail"]) < 120  # a long value is cut, not echoed whole
    assert stub_services.calls == []  # refused before reading any store


@pytest.mark.parametrize(("limit", "expected"), [(None, 7), ("1", 1), ("3", 3), ("500", 7), ("007", 7)])
def test_a_valid_limit_caps_the_runs_newest_first(stub_services, limit, expected):
    response = runs_http.runs_list(request("GET", "/api/runs", {} if limit is None else {"limit": limit}))
    assert response.status_code == 200 and response.mimetype == "application/json"
    runs = body(response)["runs"]
    assert [r["run_id"] for r in runs] == [f"r{i}" for i in range(7, 7 - expected, -1)]
    validator("RunList").validate(body(response))


def test_the_status_filter_is_case_insensitive(stub_services):
    response = runs_http.runs_list(request("GET", "/api/runs", {"status": "fAiLeD", "limit": "2"}))
    assert [r["run_id"] for r in body(response)["runs"]] == ["r6", "r4"]


def test_one_run_or_404(stub_services):
    found = runs_http.runs_get(request("GET", "/api/runs/r3", route_params={"id": "r3"}))
    assert found.status_code == 200 and body(found)["run_id"] == "r3"
    missing = runs_http.runs_get(request("GET", "/api/runs/nope", route_params={"id": "nope"}))
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    validator("Problem").validate(body(missing))


# GET /api/models ---------------------------------------------------------------------------------------------------
def test_models_lists_every_version_with_its_live_flag(stub_services):
    stub_services.models = Models([
        ModelVersion(version=1, run_id="r1", dataset_version=1, model_dir="/srv/secret/models/1",
                     metrics={"auc": 0.91, "f1": 0.5}, registered_at=1767225600.0),
        ModelVersion(version=2, run_id="r2", dataset_version=2, model_dir="/srv/secret/models/2",
                     metrics={"auc": 0.93, "f1": float("nan"), "folds": [0.9, float("inf")]},
                     registered_at=1767229200.0),
        ModelVersion(version=3, run_id="r3", dataset_version=2, model_dir="/srv/secret/models/3", metrics={},
                     registered_at=1767232800.0),
    ], live=2)
    response = models_http.models_list(request("GET", "/api/models"))
    assert response.status_code == 200 and response.mimetype == "application/json"
    text = response.get_body().decode()
    assert "NaN" not in text and "Infinity" not in text and "/srv/secret" not in text
    answer = json.loads(text)
    validator("ModelList").validate(answer)
    assert answer["live"] == 2
    assert [(m["version"], m["live"]) for m in answer["models"]] == [(1, False), (2, True), (3, False)]
    assert answer["models"][1] == {"version": 2, "run_id": "r2", "dataset_version": 2,
                                   "metrics": {"auc": 0.93, "f1": None, "folds": [0.9, None]},
                                   "registered_at": 1767229200.0, "digest": "", "live": True}


def test_models_before_any_registration(stub_services):
    response = models_http.models_list(request("GET", "/api/models"))
    assert body(response) == {"models": [], "live": None}
    validator("ModelList").validate(body(response))


# GET /api/health ---------------------------------------------------------------------------------------------------
def test_health_passes_the_checker_answer_through_uncached(monkeypatch):
    answer = (200, {"status": "ok", "checks": {"storage": {"ok": True, "ms": 3}, "pipeline": {"ok": True, "ms": 9}}})
    monkeypatch.setattr(health_http, "checker", lambda: lambda: answer)
    response = health_http.health(request("GET", "/api/health"))
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert body(response) == answer[1]


def test_health_is_503_not_500_when_its_checks_cannot_be_set_up(monkeypatch):
    """Settings missing (or no credential): the checker cannot even be built. The reason stays in the log."""
    import shared.settings

    def broken():
        raise SettingsError(f"set PIPELINE_ENDPOINT_URL (now {SECRET_URL})")

    monkeypatch.setattr(shared.settings, "get_settings", broken)
    health_http.checker.cache_clear()
    try:
        response = health_http.health(request("GET", "/api/health"))
    finally:
        health_http.checker.cache_clear()
    assert response.status_code == 503 and response.mimetype == "application/json"
    answer = body(response)
    validator("Health").validate(answer)
    assert answer["status"] == "degraded"
    assert {c["detail"] for c in answer["checks"].values()} == {"unavailable"}
    text = response.get_body().decode()
    assert "secretacct" not in text and "TOPSECRETSIG" not in text and "PIPELINE_ENDPOINT_URL" not in text


def test_health_builds_its_checker_from_the_settings_once(monkeypatch):
    import shared.settings

    settings = shared.settings.Settings(storage_connection="UseDevelopmentStorage=true",
                                        pipeline_endpoint_url="http://127.0.0.1:9/x")
    calls = []
    monkeypatch.setattr(shared.settings, "get_settings", lambda: calls.append(1) or settings)
    health_http.checker.cache_clear()
    try:
        first = health_http.checker()
        assert health_http.checker() is first and calls == [1]
    finally:
        health_http.checker.cache_clear()


# X-Forwarded-For from the local host -------------------------------------------------------------------------------
def starlette_request(headers: list[tuple[bytes, bytes]], client=("203.0.113.7", 51234)) -> Request:
    scope = {"type": "http", "method": "GET", "path": "/api/runs", "raw_path": b"/api/runs", "query_string": b"",
             "headers": headers, "client": client, "server": ("127.0.0.1", 7071), "scheme": "http",
             "http_version": "1.1", "root_path": ""}
    return Request(scope)


def test_the_host_adds_the_client_address_as_x_forwarded_for():
    req = to_http_request(starlette_request([(b"host", b"127.0.0.1:7071")]), b"", {})
    assert req.headers["X-Forwarded-For"] == "203.0.113.7"


def test_the_client_address_is_appended_to_an_existing_x_forwarded_for():
    """The last entry is the one the host saw; what the caller sent stays in front (and is not to be trusted)."""
    headers = [(b"x-forwarded-for", b"198.51.100.1, 10.0.0.2"), (b"x-forwarded-for", b"192.0.2.9")]
    req = to_http_request(starlette_request(headers), b"", {})
    assert req.headers["x-forwarded-for"] == "198.51.100.1, 10.0.0.2, 192.0.2.9, 203.0.113.7"


def test_no_client_address_no_header():
    req = to_http_request(starlette_request([], client=None), b"", {})
    assert "x-forwarded-for" not in req.headers
