"""The OpenAPI document (GET /api/openapi.json) and the Swagger UI page (GET /api/docs): a valid OpenAPI 3.1
document, describing exactly the HTTP routes the real app registers, with schemas that follow their sources."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import typing
from dataclasses import asdict

import azure.functions as func
import jsonschema
import pytest
import referencing
import referencing.jsonschema
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from function_app import api_docs
from local.functions_host.appsettings import read_host_json, route_prefix
from local.processes import PROJECT_ROOT
from shared.api import openapi, swagger_ui
from shared.domain import pipeline_params
from shared.domain.records import AuditRecord, ModelVersion, RunRecord

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

INDEX = """
import json, sys
from local.functions_host.loader import index_app
routes = []
for f in index_app(sys.argv[1]):
    for b in f.bindings:
        if b.get("type") == "httpTrigger":
            routes.append({"function": f.name, "route": b.get("route") or f.name,
                           "methods": [m.lower() for m in (b.get("methods") or [])],
                           "auth": str(b.get("authLevel") or "FUNCTION").upper()})
print(json.dumps(routes))
"""


@pytest.fixture(scope="module")
def doc() -> dict:
    return openapi.document()


def _registry(doc: dict) -> referencing.Registry:
    resource = referencing.Resource.from_contents(doc, default_specification=referencing.jsonschema.DRAFT202012)
    return referencing.Registry().with_resource("urn:openapi", resource)


def validator(doc: dict, name: str) -> jsonschema.Draft202012Validator:
    """A validator for components/schemas/<name>, resolving the document's $refs."""
    return jsonschema.Draft202012Validator({"$ref": f"urn:openapi#/components/schemas/{name}"},
                                           registry=_registry(doc))


def _refs(node, path="#"):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield path, value
            else:
                yield from _refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs(value, f"{path}/{i}")


def _resolve(doc: dict, pointer: str):
    node = doc
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


# ------------------------------------------------------------------------------ a valid OpenAPI document


def test_the_document_validates_against_the_openapi_3_1_meta_schema(doc):
    assert doc["openapi"] == "3.1.0"
    OPENAPI_31_VALIDATOR.validate(doc)  # schemathesis' copy of the official OAS 3.1 schema (no download)


def test_every_schema_object_is_valid_json_schema_2020_12(doc):
    """The OAS 3.1 meta-schema does not look inside Schema Objects; the JSON Schema meta-schema does."""
    schemas = list(doc["components"]["schemas"].items())
    schemas += [(f"parameters/{n}", p["schema"]) for n, p in doc["components"]["parameters"].items()]
    schemas += [(f"headers/{n}", h["schema"]) for n, h in doc["components"]["headers"].items()]
    for name, schema in schemas:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            pytest.fail(f"{name}: {exc.message}")
        for pattern in re.findall(r'"pattern": ?"((?:[^"\\]|\\.)*)"', json.dumps(schema)):
            re.compile(json.loads(f'"{pattern}"'))


def test_every_reference_resolves_and_every_component_is_used(doc):
    refs = list(_refs(doc))
    assert refs
    for where, ref in refs:
        assert ref.startswith("#/components/"), (where, ref)
        try:
            _resolve(doc, ref)
        except KeyError:
            pytest.fail(f"{where}: $ref {ref} does not resolve")
    used = {ref for _, ref in refs}
    for kind in ("schemas", "responses", "parameters", "headers"):
        unused = [n for n in doc["components"][kind] if f"#/components/{kind}/{n}" not in used]
        assert unused == [], f"unused components/{kind}: {unused}"


def test_schemathesis_loads_the_document_and_generates_requests_for_every_operation(doc):
    schema = schemathesis.openapi.from_dict(doc)
    schema.validate()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted((o.method.upper(), o.path) for o in operations) == sorted(
        (m.upper(), p) for p, item in doc["paths"].items() for m in item if m in HTTP_METHODS)
    retrain = next(o for o in operations if o.path == "/api/retrain")
    body = validator(doc, "RetrainRequest")

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(st.data())
    def generates(data):
        for operation in operations:
            data.draw(operation.as_strategy())
        case = data.draw(retrain.as_strategy())
        body.validate(case.body)
        assert re.fullmatch(openapi.SIGNATURE_PATTERN.strip("^$"), case.headers["X-Retrain-Signature"])
        assert case.headers["X-Retrain-Timestamp"].isdigit()
        assert case.body["dataset"] == "latest" or re.match(r"v?\d+$|\w[\w+.-]*://", case.body["dataset"])
        # what the schema allows, the webhook's parameter parser accepts (a string naming every feature aside)
        try:
            pipeline_params.validate(case.body.get("parameters") or {})
        except pipeline_params.ParameterError as exc:
            assert "cannot exclude every feature" in str(exc)

    generates()


def test_the_document_is_built_once_and_deterministic():
    first = openapi.document_bytes()
    assert openapi.document_bytes() is first  # cached
    assert json.dumps(openapi.build_document(), ensure_ascii=False, separators=(",", ":")).encode() == first
    copy = openapi.document()
    copy["paths"].clear()
    assert openapi.document()["paths"], "callers must get a copy, not the cached document"


# ------------------------------------------------------------------------------ the same routes as the app


def _operation_path(route: str, prefix: str) -> str:
    """ASP.NET route template -> OpenAPI path: `runs/{id:int}` -> `/api/runs/{id}`."""
    template = re.sub(r"\{\*?([A-Za-z_]\w*)[^}]*\}", r"{\1}", route.strip("/"))
    return "/" + "/".join(p for p in (prefix, template) if p)


@pytest.fixture(scope="module")
def app_routes() -> dict[str, dict]:
    """path -> {"methods": {...}, "auth": ...} for every HTTP function the real app registers, indexed as the
    worker does (fresh interpreter, main.py)."""
    env = {**os.environ, "PYTHON_SCRIPT_FILE_NAME": "main.py"}
    proc = subprocess.run([sys.executable, "-c", INDEX, str(PROJECT_ROOT)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    prefix = route_prefix(read_host_json(PROJECT_ROOT))
    routes: dict[str, dict] = {}
    for r in json.loads(proc.stdout.splitlines()[-1]):
        entry = routes.setdefault(_operation_path(r["route"], prefix), {"methods": set(), "auth": set()})
        entry["methods"] |= set(r["methods"] or HTTP_METHODS)
        entry["auth"].add(r["auth"])
    return routes


def _documented(doc: dict, path: str) -> set[str]:
    return {m for m in doc["paths"].get(path, {}) if m in HTTP_METHODS}


def _assert_same_methods(doc: dict, path: str, served: set[str]) -> None:
    """The document describes the methods a route serves. A route may be registered with more methods than it
    serves (so that its function, not the host, answers a wrong method): then every described operation of the
    path lists the 405 the function answers (tests/integration/test_api_http.py checks the answers)."""
    documented = _documented(doc, path)
    assert documented, path
    assert documented <= served, f"{path}: described {sorted(documented)}, registered {sorted(served)}"
    if served != documented:
        for method in documented:
            assert "405" in doc["paths"][path][method]["responses"], (
                f"{method.upper()} {path}: the route takes {sorted(served - documented)} too, answered 405, "
                "which the operation does not describe")


def test_every_route_the_app_serves_is_described_with_the_same_methods_and_auth(doc, app_routes):
    assert app_routes, "the app registers no HTTP function"
    for path, route in sorted(app_routes.items()):
        assert path in doc["paths"], f"the app serves {path} but the OpenAPI document does not describe it"
        _assert_same_methods(doc, path, route["methods"])
        for method in _documented(doc, path):
            security = doc["paths"][path][method].get("security", doc["security"])
            expected = [] if route["auth"] == {"ANONYMOUS"} else openapi._SECURED
            assert security == expected, f"{method.upper()} {path}: auth level {route['auth']}, security {security}"


@pytest.mark.parametrize("path", sorted(openapi.build_document()["paths"]))
def test_every_described_route_is_served_by_the_app(doc, app_routes, path):
    assert path in app_routes, f"the OpenAPI document describes {path}, which the app does not serve"
    _assert_same_methods(doc, path, app_routes[path]["methods"])


def test_every_secured_operation_lists_401_and_every_error_is_a_problem_document(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if op.get("security", doc["security"]):
                assert "401" in op["responses"], f"{method.upper()} {path}"
            for status, response in op["responses"].items():
                if "$ref" in response:
                    response = _resolve(doc, response["$ref"])
                if int(status) >= 400 and int(status) != 503:
                    assert list(response["content"]) == ["application/problem+json"], (path, status)
                    assert response["content"]["application/problem+json"]["schema"] == {
                        "$ref": "#/components/schemas/Problem"}
    assert doc["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]


def test_the_retrain_operation_follows_the_webhook_contract(doc):
    op = doc["paths"]["/api/retrain"]["post"]
    assert set(op["responses"]) == {"202", "400", "401", "404", "405", "409", "413", "415", "429", "502"}
    params = {p["name"]: p for p in (_resolve(doc, ref["$ref"]) for ref in op["parameters"])}
    assert (params["Idempotency-Key"]["required"], params["Idempotency-Key"]["schema"]) == (
        False, {"type": "string", "minLength": 1, "maxLength": 255})
    assert params["X-Retrain-Signature"]["required"] is True
    assert params["X-Retrain-Signature"]["schema"]["pattern"] == (
        r"^sha256=[0-9a-fA-F]{64}(,\s*sha256=[0-9a-fA-F]{64})*$")
    assert params["X-Retrain-Timestamp"]["required"] is True
    assert list(op["requestBody"]["content"]) == ["application/json"]
    accepted = op["responses"]["202"]
    assert _resolve(doc, accepted["headers"]["Location"]["$ref"])["required"] is True
    conflict = _resolve(doc, op["responses"]["409"]["$ref"])
    assert "Location" in conflict["headers"]
    too_many = _resolve(doc, op["responses"]["429"]["$ref"])
    assert _resolve(doc, too_many["headers"]["Retry-After"]["$ref"])["schema"]["type"] == "integer"
    request = doc["components"]["schemas"]["RetrainRequest"]
    assert (request["required"], request["additionalProperties"]) == (["dataset"], False)
    assert set(request["properties"]) == {"dataset", "parameters", "reason", "requested_by"}
    check = validator(doc, "RetrainRequest")
    for good in ({"dataset": "latest"}, {"dataset": "7"}, {"dataset": "v7", "reason": "r" * 200},
                 {"dataset": "https://acct.blob.core.windows.net/datasets/bank/v1/data.csv", "requested_by": "ci",
                  "parameters": {"time_budget_s": 30, "exclude_columns": ["duration"], "seed": 1}}):
        check.validate(good)
    for bad in ({}, {"dataset": ""}, {"dataset": "newest"}, {"dataset": "latest", "extra": 1},
                {"dataset": "latest", "reason": "r" * 201}, {"dataset": "latest", "parameters": {"nope": 1}},
                {"dataset": "latest", "parameters": {"dataset_version": 2}},
                {"dataset": "latest", "parameters": {"time_budget_s": 0}},
                {"dataset": "latest", "parameters": {"exclude_columns": "duration,nope"}}):
        assert not check.is_valid(bad), bad
    assert doc["components"]["securitySchemes"] == {
        "functionKeyHeader": {"type": "apiKey", "in": "header", "name": "x-functions-key",
                              "description": "An Azure Functions function (or host) key."},
        "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code",
                             "description": "The same key as a query parameter."}}
    assert doc["security"] == [{"functionKeyHeader": []}, {"functionKeyQuery": []}]  # either one


# ------------------------------------------------------------------------------ schemas follow their sources


def test_the_retrain_parameters_are_exactly_the_pipeline_parameters(doc):
    properties = doc["components"]["schemas"]["RetrainRequest"]["properties"]["parameters"]["properties"]
    assert list(properties) == list(pipeline_params.PARAMETERS)
    kinds = {"integer": "integer", "number": "number", "string": "string", "metric": "string"}
    # only the caller allowlist is open; every other pipeline parameter is the service's
    assert {n for n in properties if "not" not in properties[n]} == set(pipeline_params.CALLER_PARAMETERS)
    for name, parameter in pipeline_params.PARAMETERS.items():
        prop = properties[name]
        if name in openapi.RESERVED_PARAMETERS:
            assert prop["not"] == {}, name
            continue
        if parameter.kind == "columns":
            assert [s["type"] for s in prop["anyOf"]] == ["string", "array"]
        else:
            assert prop["type"] == kinds[parameter.kind], name
        maximum = pipeline_params.DEFAULT_MAX_TIME_BUDGET_S if name == "time_budget_s" else parameter.maximum
        assert (prop.get("minimum"), prop.get("maximum")) == (parameter.minimum, maximum), name
        if parameter.default not in (None, ""):
            assert prop["default"] == parameter.default
            assert pipeline_params.validate({name: parameter.default}) == {name: parameter.default}


def _expected_type(annotation) -> list[str]:
    names = {int: "integer", float: "number", str: "string", bool: "boolean"}
    members = typing.get_args(annotation) or (annotation,)
    return [names[a] if a is not type(None) else "null" for a in members]


def test_the_run_schema_matches_the_run_record_dataclass(doc):
    schema = doc["components"]["schemas"]["Run"]
    fields = dataclasses.fields(RunRecord)
    hints = typing.get_type_hints(RunRecord)
    assert list(schema["properties"]) == [f.name for f in fields]
    assert schema["required"] == [f.name for f in fields]  # asdict() always writes every field
    assert schema["additionalProperties"] is True
    for f in fields:
        kind = schema["properties"][f.name]["type"]
        assert (kind if isinstance(kind, list) else [kind]) == _expected_type(hints[f.name]), f.name
        assert ("null" in _expected_type(hints[f.name])) == (f.default is None), f.name
    run = RunRecord(run_id="r1", trigger_id="http-1", trigger="http", reason="ci", dataset_version=3,
                    experiment="bankmarketing-retrain", submitted_at=1767225600.25)
    check = validator(doc, "Run")
    check.validate(asdict(run))
    check.validate(json.loads(json.dumps(asdict(dataclasses.replace(
        run, status="Deployed", finished_at=1767226000.0, model_version=4, claimed_at=1767225990.5,
        uploaded_at=1767225500.0)))))
    assert not check.is_valid({**asdict(run), "dataset_version": "3"})
    accepted = doc["components"]["schemas"]["RetrainAccepted"]
    assert accepted["required"] == ["id", "run_id", "status", "dataset_version", "reason", "audit_id"]
    assert set(schema["properties"]) <= set(accepted["properties"])


def test_the_model_schema_matches_the_model_version_dataclass(doc):
    schema = doc["components"]["schemas"]["Model"]
    hints = typing.get_type_hints(ModelVersion)
    assert list(schema["properties"]) == [f.name for f in dataclasses.fields(ModelVersion)] + ["live"]
    assert set(schema["required"]) == {"version", "run_id", "dataset_version", "metrics", "registered_at", "live"}
    assert "digest" in schema["properties"] and "model_dir" in schema["properties"]
    for name, annotation in hints.items():
        if typing.get_origin(annotation) is dict:
            assert schema["properties"][name]["type"] == "object"
        else:
            assert [schema["properties"][name]["type"]] == _expected_type(annotation), name
    model = ModelVersion(version=2, run_id="r1", dataset_version=3, model_dir="/m/2", metrics={"auc": 0.93},
                         registered_at=1767225600.0)
    models = validator(doc, "ModelList")
    models.validate({"models": [{**asdict(model), "live": True}], "live": 2})
    models.validate({"models": [], "live": None})
    assert not models.is_valid({"models": [asdict(model)], "live": 2})  # `live` flag required


def test_the_health_schema(doc):
    op = doc["paths"]["/api/health"]["get"]
    assert op["security"] == []
    assert set(op["responses"]) == {"200", "405", "503"}
    check = validator(doc, "Health")
    check.validate({"status": "ok", "checks": {"storage": {"ok": True}, "pipeline": {"ok": True, "ms": 12}}})
    check.validate({"status": "degraded", "checks": {"storage": {"ok": False, "detail": "timeout"},
                                                     "pipeline": {"ok": True}}})
    assert not check.is_valid({"status": "ok", "checks": {"storage": {"ok": True}}})


# ------------------------------------------------------------------------------ what the handlers answer today


class _Runs:
    def __init__(self, runs):
        self._runs = {r.run_id: r for r in runs}

    def get(self, run_id):
        return self._runs.get(run_id)

    def list(self):
        return list(self._runs.values())

    def newest(self, limit, status=None):
        return sorted(self._runs.values(), key=lambda r: r.submitted_at, reverse=True)[:limit]


def test_what_the_run_queries_answer_conforms(doc):
    from shared.services.run_queries import get_run, list_runs

    runs = _Runs([RunRecord(run_id=f"r{i}", trigger_id="t", trigger="blob", reason="upload", dataset_version=i,
                            experiment="e", submitted_at=1767225600.0 + i, model_version=i if i % 2 else None)
                  for i in range(1, 4)])
    answer = get_run("r1", runs=runs)
    status, body = answer.status, answer.body
    assert status == 200
    validator(doc, "Run").validate(json.loads(json.dumps(body)))
    answer = get_run("nope", runs=runs)
    status, body = answer.status, answer.body
    assert status == 404
    validator(doc, "Problem").validate(body)
    answer = list_runs(runs=runs, limit=2)
    status, body = answer.status, answer.body
    assert status == 200
    validator(doc, "RunList").validate(json.loads(json.dumps(body)))


def _drift_response(monkeypatch, record: AuditRecord) -> func.HttpResponse:
    from types import SimpleNamespace

    from function_app import drift_http
    from shared.services.drift_on_demand import DriftOnDemand

    unguarded = SimpleNamespace(drift=None, drift_on_demand=DriftOnDemand(guard=None, flight=None, audit=None))
    monkeypatch.setattr(drift_http, "services", lambda: unguarded)
    monkeypatch.setattr(drift_http, "check_drift", lambda *_, **__: record)
    return drift_http.drift_http(func.HttpRequest(method="POST", url="/api/drift-check", body=b""))


def test_what_the_drift_check_answers_conforms(doc, monkeypatch):
    from shared.domain.drift import compare
    from shared.domain.sample_data import generate_sample

    op = doc["paths"]["/api/drift-check"]["post"]
    check = validator(doc, "DriftCheckResult")
    skipped = AuditRecord(id="http-1", trigger="http", function="drift_http", started_at=1.0, outcome="skipped",
                          detail="skipped: no live model yet")
    response = _drift_response(monkeypatch, skipped)
    assert str(response.status_code) in op["responses"]
    check.validate(json.loads(response.get_body()))

    result = compare(generate_sample(300, 1), generate_sample(300, 2), min_rows=100)
    drifted = AuditRecord(id="http-2", trigger="http", function="drift_http", started_at=1.0, outcome="no_drift",
                          detail=f"no drift: {result.verdict}", model_version=1, dataset_version=2)
    # the summary check_drift stores in the audit record
    drifted.data["drift"] = {"drifted": result.drifted, "drift_share": result.drift_share, "verdict": result.verdict,
                             "rows": result.rows, "drifted_columns": result.drifted_columns,
                             "scores": {c: v["score"] for c, v in result.columns.items()}, "target": result.target}
    drifted.data["report"] = "reports/2026/01/01/http-2.html"
    response = _drift_response(monkeypatch, drifted)
    assert str(response.status_code) in op["responses"]
    check.validate(json.loads(response.get_body()))


# ------------------------------------------------------------------------------ the blueprint's two functions


def test_get_openapi_json_serves_the_document():
    response = api_docs.openapi_json(func.HttpRequest(method="GET", url="/api/openapi.json", body=b""))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_body() == openapi.document_bytes()
    assert json.loads(response.get_body()) == openapi.document()


def test_get_docs_serves_swagger_ui_pointed_at_the_document():
    response = api_docs.api_docs(func.HttpRequest(method="GET", url="/api/docs", body=b""))
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_body().decode("utf-8")
    assert "url: '/api/openapi.json'" in html
    version = swagger_ui.SWAGGER_UI_VERSION
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert f'src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@{version}/swagger-ui-bundle.js"' in html
    assert f'href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@{version}/swagger-ui.css"' in html
    assert html.count('integrity="sha384-') == 2
    # the CSP lets exactly our inline start-up script run
    csp = response.headers["Content-Security-Policy"]
    inline = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode("utf-8")).digest()).decode()
    assert f"script-src https://cdn.jsdelivr.net 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
