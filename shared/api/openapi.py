"""The OpenAPI 3.1 description of the public HTTP API (served at GET /api/openapi.json).

Built in Python so that what can drift is derived from its source: the run and model schemas from the RunRecord
and ModelVersion dataclasses (field names, types, nullability), the retrain `parameters` schema from
shared.domain.pipeline_params. The rest is the webhook contract as our API issue fixes it. The document is built
once per process and serialized deterministically (same bytes on every call and every worker).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import types
import typing
from typing import Any

from shared.domain import pipeline_params, schema
from shared.domain.records import ModelVersion, RunRecord
from shared.services import dashboard as dashboard_kinds

OPENAPI_VERSION = "3.1.0"
API_VERSION = "0.1.0"
ROUTE_PREFIX = "/api"  # host.json extensions.http.routePrefix
MAX_BODY = 1024 * 1024
# Pipeline parameters the service sets itself (dataset, lineage, held-out share, champion): everything outside the
# caller allowlist (pipeline_params.CALLER_PARAMETERS); a request naming one in `parameters` is refused with 400.
RESERVED_PARAMETERS = tuple(n for n in pipeline_params.PARAMETERS if n not in pipeline_params.CALLER_PARAMETERS)
SIGNATURE_PATTERN = r"^sha256=[0-9a-fA-F]{64}(,\s*sha256=[0-9a-fA-F]{64})*$"
TIMESTAMP_PATTERN = r"^[0-9]{1,15}$"

_SECURED = [{"functionKeyHeader": []}, {"functionKeyQuery": []}]
_ANONYMOUS: list = []
_PROBLEM = "application/problem+json"
_JSON = "application/json"


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


# ------------------------------------------------------------------------------ dataclass -> JSON Schema


def _nullable(schema_: dict) -> dict:
    kind = schema_.get("type")
    if isinstance(kind, str):
        return {**schema_, "type": [kind, "null"]}
    return {"anyOf": [schema_, {"type": "null"}]}


def type_schema(annotation: Any) -> dict:
    """JSON Schema (2020-12, as OpenAPI 3.1 uses it) for a field annotation of our record dataclasses."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return {}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    if annotation is str:
        return {"type": "string"}
    if origin in (types.UnionType, typing.Union):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner = type_schema(members[0]) if len(members) == 1 else {"anyOf": [type_schema(m) for m in members]}
        return _nullable(inner) if len(members) < len(typing.get_args(annotation)) else inner
    if origin is dict:
        _, value = typing.get_args(annotation) or (str, Any)
        values = type_schema(value)
        return {"type": "object", **({"additionalProperties": values} if values else {})}
    if origin in (list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return {"type": "array", **({"items": type_schema(args[0])} if args else {})}
    raise TypeError(f"no JSON Schema mapping for annotation {annotation!r}")


def dataclass_properties(cls: type, descriptions: dict[str, str]) -> dict[str, dict]:
    """One property per dataclass field, in declaration order; nullable exactly where the annotation allows None
    (for our records: where the default is None)."""
    hints = typing.get_type_hints(cls)
    properties = {}
    for f in dataclasses.fields(cls):
        prop = type_schema(hints[f.name])
        if f.name in descriptions:
            prop = {**prop, "description": descriptions[f.name]}
        properties[f.name] = prop
    return properties


_RUN_FIELDS = {
    "run_id": "Pipeline run id (the Azure ML run / the local pipeline endpoint's run `Id`).",
    "trigger_id": "Audit id of the trigger that submitted the run.",
    "trigger": "What fired: blob, timer, http, eventgrid or cli.",
    "reason": "Why the run was asked for: the trigger kind (upload, drift, http, manual).",
    "dataset_version": "Registered dataset version the run trains on.",
    "experiment": "Experiment the run is recorded under.",
    "submitted_at": "When the run was submitted (Unix seconds).",
    "uploaded_at": "When the data that caused the run landed (Unix seconds; blob uploads only).",
    "status": "Submitted -> Handling -> Deployed | KeptChampion | RolledBack | Failed; a request not submitted "
              "yet is Queued (coalescing window, a run in flight, or retrying), or ended Superseded / Failed, and "
              "its `run_id` is the request's id until then.",
    "finished_at": "When the completion handler finished with the run (Unix seconds).",
    "model_version": "Model version registered from the run, once it completed.",
    "detail": "What happened, in words (the decision and its reason, or the error).",
    "claimed_at": "When a completion (event or reconcile) started handling the run (Unix seconds).",
    "traceparent": "W3C trace context of the submission.",
}
_MODEL_FIELDS = {
    "version": "Model version (1, 2, ...).",
    "run_id": "Pipeline run that produced the model.",
    "dataset_version": "Dataset version the model was trained on.",
    "model_dir": "Where the model's MLflow folder is stored.",
    "metrics": "The run's figures (cross-validation and held-out scores).",
    "registered_at": "When the model was registered (Unix seconds).",
    "digest": "Content hash of the model folder at registration (sha256:...); every local load path checks it.",
}
# Fields a model entry need not carry (a storage location, not part of the public contract).
_MODEL_OPTIONAL = ("model_dir", "digest")


def run_schema() -> dict:
    properties = dataclass_properties(RunRecord, _RUN_FIELDS)
    return {"type": "object", "title": "Run", "description": "A pipeline run this service submitted "
            "(shared.domain.records.RunRecord), with what happened to it.",
            "properties": properties, "required": list(properties), "additionalProperties": True}


def model_schema() -> dict:
    properties = dataclass_properties(ModelVersion, _MODEL_FIELDS)
    properties["live"] = {"type": "boolean", "description": "Whether this version serves the scoring endpoint."}
    return {"type": "object", "title": "Model", "description": "A registered model version "
            "(shared.domain.records.ModelVersion) and whether it is live.",
            "properties": properties, "required": [n for n in properties if n not in _MODEL_OPTIONAL],
            "additionalProperties": True}


# ------------------------------------------------------------------------------ retrain request body


def _columns_pattern() -> str:
    """A comma-separated list of feature names (blanks around names and empty items are ignored)."""
    name = "(?:" + "|".join(re.escape(c) for c in schema.FEATURES) + ")"
    return rf"^\s*(?:{name}\s*)?(?:,\s*(?:{name}\s*)?)*$"


def parameter_schema(parameter: pipeline_params.Parameter) -> dict:
    """The JSON Schema of one pipeline parameter, as pipeline_params.Parameter.parse accepts it."""
    if parameter.name in RESERVED_PARAMETERS:
        return {"not": {}, "description": f"Set by the service, not by a caller ({parameter.name}: "
                f"{parameter.description}): naming it is refused with 400."}
    if parameter.kind == "integer":
        prop: dict = {"type": "integer"}
    elif parameter.kind == "number":
        prop = {"type": "number"}
    elif parameter.kind == "metric":
        prop = {"type": "string", "enum": list(pipeline_params.PRIMARY_METRICS)}
    elif parameter.kind == "columns":
        prop = {"anyOf": [
            {"type": "string", "pattern": _columns_pattern(), "description": "Comma-separated feature names."},
            {"type": "array", "items": {"type": "string", "enum": list(schema.FEATURES)}, "uniqueItems": True,
             "maxItems": len(schema.FEATURES) - 1},
        ]}
    elif parameter.kind == "string":
        prop = {"type": "string"}
        if parameter.name in ("experiment_name", "dataset_name"):
            prop["pattern"] = pipeline_params._NAME.pattern
    else:
        raise TypeError(f"no JSON Schema mapping for parameter kind {parameter.kind!r}")
    if parameter.minimum is not None:
        prop["minimum"] = parameter.minimum
    if parameter.maximum is not None:
        prop["maximum"] = parameter.maximum
    if parameter.name == "time_budget_s":  # a caller's budget is capped by the service's MAX_TIME_BUDGET_S
        prop["maximum"] = pipeline_params.DEFAULT_MAX_TIME_BUDGET_S
        parameter = dataclasses.replace(parameter, description=parameter.description + " (at most the service's "
                                        f"MAX_TIME_BUDGET_S, {pipeline_params.DEFAULT_MAX_TIME_BUDGET_S} unless "
                                        "configured otherwise)")
    if parameter.default not in (None, ""):
        prop["default"] = parameter.default
    prop["description"] = parameter.description[:1].upper() + parameter.description[1:] + "."
    return prop


def retrain_request_schema() -> dict:
    return {
        "type": "object",
        "title": "RetrainRequest",
        "required": ["dataset"],
        "additionalProperties": False,
        "properties": {
            "dataset": {
                "description": "What to train on: `latest` (the newest registered dataset version), a registered "
                               "version number (`3` or `v3`), or the http(s) URI of a blob in this storage "
                               "account: a registered version's blob, or an upload the blob trigger registered.",
                "anyOf": [
                    {"type": "string", "const": "latest"},
                    {"type": "string", "pattern": "^v?[0-9]+$"},
                    {"type": "string", "format": "uri", "pattern": "^https?://[^/\\s]+/\\S+$"},
                ],
                "examples": ["latest", "v3", "https://account.blob.core.windows.net/datasets/bank/v3/data.csv"],
            },
            "parameters": {
                "type": "object",
                "description": "Training pipeline parameters (shared/domain/pipeline_params.py). Unknown names "
                               "and ill-typed values are refused with 400 naming the parameter.",
                "properties": {name: parameter_schema(p) for name, p in pipeline_params.PARAMETERS.items()},
                "additionalProperties": False,
            },
            "reason": {"type": "string", "maxLength": 200, "description": "Why; recorded in the trigger's audit "
                       "record (the run's and the pipeline's `reason` is the trigger kind, `http`)."},
            "requested_by": {"type": "string", "maxLength": 200, "description": "Who asks; recorded in the audit."},
        },
        "examples": [{"dataset": "latest", "reason": "nightly", "requested_by": "ci",
                      "parameters": {"time_budget_s": 120, "exclude_columns": "duration"}}],
    }


def retrain_accepted_schema() -> dict:
    run = dataclass_properties(RunRecord, _RUN_FIELDS)
    properties = {"id": {"type": "string", "description": "The run's id (same as `run_id`): GET /api/runs/{id}."},
                  **run,
                  "status": {**run["status"], "examples": ["Submitted"]},
                  "audit_id": {"type": "string", "description": "Audit record of this request."}}
    return {"type": "object", "title": "RetrainAccepted",
            "description": "The submitted run; may carry the other run record fields too.",
            "properties": properties,
            "required": ["id", "run_id", "status", "dataset_version", "reason", "audit_id"],
            "additionalProperties": True}


# ------------------------------------------------------------------------------ other schemas


def _problem_schema() -> dict:
    return {
        "type": "object",
        "title": "Problem",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "format": "uri-reference", "default": "about:blank"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string", "description": "What was wrong, for a human; never contains secrets."},
            "instance": {"type": "string", "format": "uri-reference"},
        },
        "additionalProperties": True,
    }


def _drift_schemas() -> dict[str, dict]:
    nullable_number = {"type": ["number", "null"]}
    column = {
        "type": "object",
        "required": ["metric", "score", "threshold", "drifted", "psi"],
        "properties": {
            "metric": {"type": "string", "enum": ["wasserstein_normalized", "jensen_shannon"]},
            "score": nullable_number, "threshold": {"type": "number"}, "drifted": {"type": "boolean"},
            "psi": nullable_number,
            "rate": {"type": "object", "description": "Positive-label rate on each side (target only).",
                     "properties": {"reference": {"type": "number"}, "current": {"type": "number"}}},
        },
        "additionalProperties": True,
    }
    summary = {
        "type": "object",
        "title": "DriftSummary",
        "required": ["drifted", "drift_share", "verdict", "rows", "drifted_columns", "scores", "target"],
        "properties": {
            "drifted": {"type": ["boolean", "null"], "description": "null: not enough data for a verdict."},
            "drift_share": {"type": "number", "minimum": 0, "maximum": 1},
            "verdict": {"type": "string"},
            "rows": {"type": "object", "additionalProperties": {"type": "integer"},
                     "properties": {"reference": {"type": "integer"}, "current": {"type": "integer"}}},
            "drifted_columns": {"type": "array", "items": {"type": "string"}},
            "scores": {"type": "object", "additionalProperties": nullable_number,
                       "description": "Drift score per feature column."},
            "target": {"anyOf": [_ref("schemas", "DriftColumn"), {"type": "null"}],
                       "description": "Label drift, when both sides carry the label."},
        },
        "additionalProperties": True,
    }
    result = {
        "type": "object",
        "title": "DriftCheckResult",
        "description": "Summary of the audit record the check wrote.",
        "required": ["audit_id", "outcome", "detail", "run_id", "drift", "report"],
        "properties": {
            "audit_id": {"type": "string"},
            "outcome": {"type": "string", "description": "no_drift; skipped (no live model, not enough data, or "
                        "a retrain is not due); submitted (drift: a retrain was submitted); failed; or profiling "
                        "(202: the window is profiled by a job, `job`; the verdict follows in the audit record).",
                        "examples": ["no_drift", "skipped", "submitted", "failed", "profiling"]},
            "detail": {"type": "string"},
            "run_id": {"type": ["string", "null"], "description": "The retrain it submitted, if any."},
            "drift": {"anyOf": [_ref("schemas", "DriftSummary"), {"type": "null"}],
                      "description": "null when the check stopped before comparing."},
            "report": {"type": ["string", "null"], "description": "Where the HTML drift report was stored "
                       "(container/path)."},
            "job": {"type": ["string", "null"], "description": "The profiling job a large window was handed to "
                    "(outcome profiling)."},
        },
        "additionalProperties": True,
    }
    return {"DriftColumn": column, "DriftSummary": summary, "DriftCheckResult": result}


def _health_schemas() -> dict[str, dict]:
    check = {"type": "object", "required": ["ok"],
             "properties": {"ok": {"type": "boolean"},
                            "ms": {"type": "integer", "minimum": 0, "description": "How long the check took."},
                            "detail": {"type": "string", "description": "Why it failed, in a word or two (e.g. "
                                       "unreachable, timeout, unauthorized, http 503); never a host or account.",
                                       "examples": ["unreachable", "timeout"]}},
             "additionalProperties": True}
    health = {
        "type": "object",
        "title": "Health",
        "description": "Whether the app's dependencies answer; never contains configuration values.",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"],
                       "description": "`ok` when every check passed, else `degraded`."},
            "checks": {"type": "object", "required": ["storage", "pipeline"],
                       "properties": {"storage": _ref("schemas", "HealthCheck"),
                                      "pipeline": _ref("schemas", "HealthCheck")},
                       "additionalProperties": _ref("schemas", "HealthCheck")},
        },
        "additionalProperties": True,
    }
    return {"HealthCheck": check, "Health": health}


def _schemas() -> dict[str, dict]:
    return {
        "Problem": _problem_schema(),
        "RetrainRequest": retrain_request_schema(),
        "RetrainAccepted": retrain_accepted_schema(),
        "Run": run_schema(),
        "RunList": {"type": "object", "required": ["runs"], "additionalProperties": True,
                    "properties": {"runs": {"type": "array", "items": _ref("schemas", "Run"),
                                            "description": "Newest first."}}},
        "Model": model_schema(),
        "ModelList": {"type": "object", "required": ["models", "live"], "additionalProperties": True,
                      "properties": {"models": {"type": "array", "items": _ref("schemas", "Model"),
                                                "description": "By version, oldest first."},
                                     "live": {"type": ["integer", "null"],
                                              "description": "The live model version (null: none yet)."}}},
        **_health_schemas(),
        **_drift_schemas(),
        "Dashboard": _dashboard_schema(),
    }


def _dashboard_schema() -> dict:
    """GET /api/dashboard/data (shared.services.dashboard.snapshot): the page's data."""
    number = {"type": ["number", "null"]}
    integer = {"type": ["integer", "null"]}
    text = {"type": "string"}
    figures = {"type": "object", "required": ["auc", "accuracy", "rows"],
               "properties": {"auc": number, "accuracy": number, "rows": number}}

    def obj(required: dict, **optional) -> dict:
        return {"type": "object", "required": list(required), "properties": {**required, **optional},
                "additionalProperties": True}

    entry = obj({"id": text, "kind": {"type": "string", "enum": [k.value for k in dashboard_kinds.Kind]},
                 "trigger": text, "function": text, "started_at": {"type": "number"}, "finished_at": number,
                 "outcome": text, "reason": text, "source": text, "dataset_version": integer,
                 "run_id": {"type": ["string", "null"]}, "model_version": integer, "has_report": {"type": "boolean"}})
    comparison = obj({"audit_id": text, "at": {"type": "number"}, "outcome": text, "decision": text, "reason": text,
                      "challenger": figures, "champion": figures, "run_id": {"type": ["string", "null"]}})
    model = obj({"version": {"type": "integer"}, "run_id": text, "dataset_version": {"type": "integer"},
                 "registered_at": {"type": "number"},
                 "state": {"type": "string", "enum": [s.value for s in dashboard_kinds.ModelState]},
                 "held_out": figures, "comparison": {"anyOf": [comparison, {"type": "null"}]}})
    check = obj({"audit_id": text, "at": {"type": "number"}, "outcome": text,
                 "drifted": {"type": ["boolean", "null"]}, "drift_share": number,
                 "drifted_columns": {"type": "array", "items": text},
                 "scores": {"type": "object", "additionalProperties": {"type": "number"}},
                 "has_report": {"type": "boolean"}})
    request = obj({"id": text, "state": {"type": "string", "enum": [s.value for s in dashboard_kinds.OutboxState]},
                   "trigger": text, "reason": text, "dataset_version": {"type": "integer"},
                   "requested_at": {"type": "number"}, "attempts": {"type": "integer"}, "next_attempt_at": number,
                   "last_error": text, "deadline": {"type": "number"}})
    period = obj({"period": integer, "rows": integer, "live_version": integer, "ours_auc": number,
                  "static_auc": number, "lightgbm_auc": number})
    replay = obj({"periods": {"type": "array", "items": period}, "summary": {"type": "object"}})
    return obj({"generated_at": {"type": "number"}, "live_version": integer,
                "timeline": {"type": "array", "items": entry, "description": "Newest first."},
                "audit_window": obj({"read": {"type": "integer"}, "limit": {"type": "integer"}}),
                "runs": {"type": "array", "items": _ref("schemas", "Run"), "description": "Newest first."},
                "models": {"type": "array", "items": model, "description": "By version, oldest first."},
                "drift": obj({"columns": {"type": "array", "items": text},
                              "checks": {"type": "array", "items": check, "description": "Oldest first."}}),
                "outbox": {"type": "array", "items": request},
                "replay": {"anyOf": [replay, {"type": "null"}],
                           "description": "bench/replay.py's last figures, when a replay stored them."}})


# ------------------------------------------------------------------------------ responses, parameters, headers


def _problem_response(description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {_PROBLEM: {"schema": _ref("schemas", "Problem")}}}
    if headers:
        response["headers"] = headers
    return response


def _responses() -> dict[str, dict]:
    return {
        "BadRequest": _problem_response("The request is malformed: the detail names what is wrong."),
        "Unauthorized": _problem_response(
            "No valid function key (`x-functions-key` header or `code` query parameter), or for POST /api/retrain "
            "and POST /api/drift-check a missing, stale, replayed or wrong signature. (A missing or wrong function "
            "key is refused by the Functions host itself, which may answer with an empty body.) Refusals before "
            "the signature is verified are counted per caller and minute; more than REJECT_LIMIT in a minute are "
            "answered 429."),
        "DatasetNotFound": _problem_response("The dataset version does not exist (or none is registered yet)."),
        "RunNotFound": _problem_response("No run with this id was submitted by this service."),
        "MethodNotAllowed": _problem_response("The method is not allowed on this route.",
                                              {"Allow": _ref("headers", "Allow")}),
        "Conflict": _problem_response(
            "The Idempotency-Key was used before with a different body (or a request with it is still being "
            "handled: retry after `Retry-After`), or a retrain is already in flight for that dataset: then "
            "`Location` names the existing run.",
            {"Location": _ref("headers", "ExistingRunOptional"), "Retry-After": _ref("headers", "RetryAfterOptional")}),
        "PayloadTooLarge": _problem_response(f"The body is over {MAX_BODY} bytes (1 MB)."),
        "UnsupportedMediaType": _problem_response("Content-Type is not application/json."),
        "TooManyRequests": _problem_response("Rate limited (the route's per-caller limit, or more than REJECT_LIMIT "
                                             "refused requests from the caller in the last minute); retry after "
                                             "`Retry-After` seconds.",
                                             {"Retry-After": _ref("headers", "RetryAfter")}),
        "DriftCheckRunning": _problem_response(
            "A drift check is already running (one at a time, across instances): `Location` shows it "
            "(GET it: status Running, then its outcome).",
            {"Location": _ref("headers", "RunLocation"), "Retry-After": _ref("headers", "RetryAfterOptional")}),
        "BadGateway": _problem_response("The training pipeline endpoint did not accept the run."),
    }


def _parameters() -> dict[str, dict]:
    return {
        "IdempotencyKey": {
            "name": "Idempotency-Key", "in": "header", "required": False,
            "description": "Makes the request safe to retry: a repeat with the same key and body answers with the "
                           "run the first one submitted; the same key with a different body is a 409.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        },
        "RetrainSignature": {
            "name": "X-Retrain-Signature", "in": "header", "required": True,
            "description": "`sha256=` + the lowercase hex HMAC-SHA256, keyed with the shared webhook secret, of "
                           "`X-Retrain-Timestamp` + `.` + the raw body bytes. Several comma-separated values are "
                           "accepted (secret rotation): valid when any matches.",
            "schema": {"type": "string", "pattern": SIGNATURE_PATTERN},
        },
        "RetrainTimestamp": {
            "name": "X-Retrain-Timestamp", "in": "header", "required": True,
            "description": "When the request was signed: an integer number of Unix seconds; it must be within the "
                           "tolerance (5 minutes) of the server's clock.",
            "schema": {"type": "string", "pattern": TIMESTAMP_PATTERN}, "example": "1767225600",
        },
        "RunId": {"name": "id", "in": "path", "required": True, "description": "The run's id (`run_id`).",
                  "schema": {"type": "string", "minLength": 1}},
        "Limit": {"name": "limit", "in": "query", "required": False,
                  "description": "How many runs, newest first: an integer from 1 to 500 (anything else is "
                                 "refused with 400).",
                  "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
        "Status": {"name": "status", "in": "query", "required": False,
                   "description": "Only runs with this status (case-insensitive), e.g. Deployed.",
                   "schema": {"type": "string"}},
    }


def _headers() -> dict[str, dict]:
    return {
        "RunLocation": {"description": "The run's URL.", "required": True,
                        "schema": {"type": "string", "pattern": f"^{ROUTE_PREFIX}/runs/.+$"}},
        "RetryAfter": {"description": "Seconds to wait before retrying.", "required": True,
                       "schema": {"type": "integer", "minimum": 0}},
        "ExistingRunOptional": {"description": "The existing run's URL (a retrain in flight for the dataset).",
                                "required": False,
                                "schema": {"type": "string", "pattern": f"^{ROUTE_PREFIX}/runs/.+$"}},
        "RetryAfterOptional": {"description": "Seconds to wait before retrying (a request with the same key is "
                                              "still being handled).",
                               "required": False, "schema": {"type": "integer", "minimum": 0}},
        "Allow": {"description": "The methods the route accepts.", "schema": {"type": "string"}},
    }


# ------------------------------------------------------------------------------ operations


def _operation(operation_id: str, summary: str, tag: str, responses: dict, *, secured: bool = True,
               description: str | None = None, parameters: list | None = None, body: dict | None = None) -> dict:
    op: dict = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    op["security"] = _SECURED if secured else _ANONYMOUS
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = body
    if secured:
        responses = {**responses, "401": _ref("responses", "Unauthorized")}
    op["responses"] = dict(sorted(responses.items()))
    return op


def _json_response(description: str, schema_name: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {_JSON: {"schema": _ref("schemas", schema_name)}}}
    if headers:
        response["headers"] = headers
    return response


def _paths() -> dict[str, dict]:
    p = ROUTE_PREFIX
    return {
        f"{p}/retrain": {"post": _operation(
            "requestRetrain", "Ask for a retrain", "retrain",
            description="Submits the training pipeline for a dataset version. The request must be signed "
                        "(X-Retrain-Signature over X-Retrain-Timestamp and the body) besides the function key.",
            parameters=[_ref("parameters", n) for n in ("IdempotencyKey", "RetrainSignature", "RetrainTimestamp")],
            body={"required": True, "content": {_JSON: {"schema": _ref("schemas", "RetrainRequest")}}},
            responses={
                "202": _json_response("Submitted; follow the run at `Location`.", "RetrainAccepted",
                                      {"Location": _ref("headers", "RunLocation")}),
                "400": _ref("responses", "BadRequest"),
                "404": _ref("responses", "DatasetNotFound"),
                "405": _ref("responses", "MethodNotAllowed"),
                "409": _ref("responses", "Conflict"),
                "413": _ref("responses", "PayloadTooLarge"),
                "415": _ref("responses", "UnsupportedMediaType"),
                "429": _ref("responses", "TooManyRequests"),
                "502": _ref("responses", "BadGateway"),
            })},
        f"{p}/runs": {"get": _operation(
            "listRuns", "List the runs this service submitted", "runs",
            parameters=[_ref("parameters", "Limit"), _ref("parameters", "Status")],
            responses={"200": _json_response("The runs, newest first.", "RunList"),
                       "400": _ref("responses", "BadRequest"), "405": _ref("responses", "MethodNotAllowed")})},
        f"{p}/runs/{{id}}": {"get": _operation(
            "getRun", "One run and what happened to it", "runs",
            parameters=[_ref("parameters", "RunId")],
            responses={"200": _json_response("The run.", "Run"), "404": _ref("responses", "RunNotFound"),
                       "405": _ref("responses", "MethodNotAllowed")})},
        f"{p}/models": {"get": _operation(
            "listModels", "Registered model versions and which one is live", "models",
            responses={"200": _json_response("The model versions.", "ModelList"),
                       "405": _ref("responses", "MethodNotAllowed")})},
        f"{p}/health": {"get": _operation(
            "getHealth", "Whether storage and the pipeline endpoint answer", "operations", secured=False,
            responses={"200": _json_response("Every check passed.", "Health"),
                       "405": _ref("responses", "MethodNotAllowed"),
                       "503": _json_response("A check failed (same shape; the failing check has ok: false).",
                                             "Health")})},
        f"{p}/drift-check": {"post": _operation(
            "runDriftCheck", "Run the drift check now", "drift",
            description="Compares what the live model is asked about now with its training data, writes the "
                        "HTML report and an audit record, and submits a retrain when the data drifted. Signed like "
                        "POST /api/retrain (X-Retrain-Signature over X-Retrain-Timestamp + `.` + the body, which "
                        "is empty or `{}`: the check takes no parameters); its own per-caller rate limit "
                        "(DRIFT_HTTP_RATE_LIMIT per DRIFT_HTTP_RATE_WINDOW_S); one check at a time.",
            parameters=[_ref("parameters", n) for n in ("RetrainSignature", "RetrainTimestamp")],
            responses={"200": _json_response("The check's verdict.", "DriftCheckResult"),
                       "202": _json_response("The window is too large to profile inline: a job profiles it "
                                             "(`job`) and the verdict follows in the audit record `audit_id`.",
                                             "DriftCheckResult"),
                       "400": _ref("responses", "BadRequest"),
                       "405": _ref("responses", "MethodNotAllowed"),
                       "409": _ref("responses", "DriftCheckRunning"),
                       "413": _ref("responses", "PayloadTooLarge"),
                       "429": _ref("responses", "TooManyRequests")})},
        f"{p}/dashboard": {"get": _operation(
            "getDashboard", "The dashboard page", "dashboard",
            description="One self-contained HTML page (its script and style sheet are served by this app) showing "
                        "the triggers, runs, decisions, models, drift and outbox, refreshed from "
                        "GET /api/dashboard/data. A browser passes the function key as `?code=`; the page "
                        "holds no key or data.",
            responses={"200": {"description": "The HTML page.", "content": {"text/html": {"schema": {
                "type": "string"}}}}, "405": _ref("responses", "MethodNotAllowed")})},
        f"{p}/dashboard/data": {"get": _operation(
            "getDashboardData", "What the dashboard shows, as JSON", "dashboard",
            description="Read from the same stores as GET /api/runs and /api/models, plus the audit trail (the "
                        "newest 500 records) and the outbox's open requests.",
            responses={"200": _json_response("The snapshot.", "Dashboard"),
                       "405": _ref("responses", "MethodNotAllowed")})},
        f"{p}/dashboard/assets/{{name}}": {"get": _operation(
            "getDashboardAsset", "The dashboard's script or style sheet", "dashboard", secured=False,
            parameters=[{"name": "name", "in": "path", "required": True, "description": "The asset's name.",
                         "schema": {"type": "string", "enum": ["dashboard.js", "dashboard.css"]}}],
            responses={"200": {"description": "The file.", "content": {
                "text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}}}},
                "404": _problem_response("No asset of that name."),
                "405": _ref("responses", "MethodNotAllowed")})},
        f"{p}/drift-reports/{{id}}": {"get": _operation(
            "getDriftReport", "A drift check's HTML report", "drift",
            parameters=[{"name": "id", "in": "path", "required": True,
                         "description": "The drift check's audit id (`audit_id`).",
                         "schema": {"type": "string", "minLength": 1}}],
            responses={"200": {"description": "The report (sandboxed HTML).",
                               "content": {"text/html": {"schema": {"type": "string"}}}},
                       "404": _problem_response("No drift check with that id, or it has no stored report."),
                       "405": _ref("responses", "MethodNotAllowed")})},
        f"{p}/openapi.json": {"get": _operation(
            "getOpenApiDocument", "This document", "docs", secured=False,
            responses={"200": {"description": "The OpenAPI document.", "content": {_JSON: {"schema": {
                "type": "object", "required": ["openapi", "info", "paths"]}}}},
                "405": _ref("responses", "MethodNotAllowed")})},
        f"{p}/docs": {"get": _operation(
            "getApiDocs", "Swagger UI for this document", "docs", secured=False,
            responses={"200": {"description": "An HTML page (Swagger UI).",
                               "content": {"text/html": {"schema": {"type": "string"}}}},
                       "405": _ref("responses", "MethodNotAllowed")})},
    }


def build_document() -> dict:
    """A fresh copy of the whole document (use `document()` / `document_bytes()` to serve it)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "azureml-retrain",
            "version": API_VERSION,
            "summary": "Event-driven retraining for Azure Machine Learning.",
            "description": "Ask for a retrain, follow the runs it submits, list the registered models, run the "
                           "drift check on demand and watch it all on the dashboard page. Errors are RFC 9457 "
                           "problem documents.",
        },
        "servers": [{"url": "/", "description": "This Functions app."}],
        "tags": [{"name": n, "description": d} for n, d in (
            ("retrain", "Ask for a retrain."), ("runs", "Pipeline runs this service submitted."),
            ("models", "Registered model versions."), ("drift", "The drift check."),
            ("operations", "Health."), ("dashboard", "The dashboard page and its data."),
            ("docs", "This description."))],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "parameters": _parameters(),
            "headers": _headers(),
            "securitySchemes": {
                "functionKeyHeader": {"type": "apiKey", "in": "header", "name": "x-functions-key",
                                      "description": "An Azure Functions function (or host) key."},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code",
                                     "description": "The same key as a query parameter."},
            },
        },
        "security": _SECURED,
    }


@functools.cache
def document_bytes() -> bytes:
    """The document as served: compact UTF-8 JSON, same bytes on every call."""
    return json.dumps(build_document(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def document() -> dict:
    """The document as a dict (a copy: callers may change it without touching what is served)."""
    return json.loads(document_bytes())
