"""POST /score's request contract: the one of an Azure ML managed online deployment of this MLflow model without
a scoring script (a "no-code" deployment, shared/adapters/azure_online/deployer.py), so a request the Azure
deployment refuses is refused here too, with the same status and message.

That deployment runs Azure ML's inference server (`azureml-inference-server-http`) with Azure ML's generated
MLflow scoring script (`mlflow_score_script.py`, github.com/Azure/azureml-assets,
assets/inference/environments/mlflow-ubuntu20.04-py39-cpu-inference/context/mlflow_score_script.py). Its
`run(input_data, params=None)` is decorated with inference-schema's `@input_schema`, so the server
(azureml_inference_server_http/server/input_parsers.py `ObjectInput`, server/routes.py `handle_score`):
- wants `Content-Type: application/json` (else 415 "Expects Content-Type to be application/json");
- wants a JSON object body (else 400 with one of three messages, below);
- passes only its `input_data` (required: else 400 "A value is not provided for the 'input_data' parameter.")
  and `params` (optional) keys to run(); other top-level keys, such as the seeds' `data`, are ignored;
- answers 500 "An unexpected error occurred in scoring script. ..." when run() raises: for a model whose input
  example is a DataFrame (ours) the decorator reads `input_data` with pandas' split orientation
  (inference_schema PandasParameterType(orient="split")), so any other shape, a missing column or a value of
  the wrong type fails there or in MLflow's schema check, all alike;
- answers run()'s result as JSON: `_get_jsonable_obj(model.predict(df))`, our classifier's 0/1 per row.
Learn: https://learn.microsoft.com/azure/machine-learning/how-to-deploy-mlflow-models-online-endpoints
("Invoke the endpoint": `{"input_data": {"columns", "index", "data"}}`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import IntEnum
from typing import Any

from shared.domain import schema

MAX_RECORDS = 10_000  # local only (stricter): Azure bounds the body size instead
SPLIT_KEYS = frozenset({"columns", "index", "data"})  # pandas read_json(orient="split") refuses any other key
RUN_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."
INTERNAL_ERROR = "An unexpected internal error occurred. Check the logs for more info."
NO_INPUT_DATA = "A value is not provided for the 'input_data' parameter."
NOT_JSON_TYPE = "Expects Content-Type to be application/json"
FORMATS_HINT = ('{"input_data": {"columns": [...], "index": [...], "data": [[...], ...]}, "params": {...}?} '
                "(pandas split orientation, as an Azure ML no-code MLflow deployment reads it)")


class ContainerStatus(IntEnum):
    """What the inference server inside the deployment answers when it does not answer 200; the managed
    endpoint turns each into a 424 naming it (shared/adapters/scoring.py MODEL_ERROR_STATUS)."""

    BAD_REQUEST = 400
    METHOD_NOT_ALLOWED = 405  # werkzeug's answer to a method the /score route does not list
    UNSUPPORTED_MEDIA_TYPE = 415
    RUN_FAILED = 500


class RequestError(ValueError):
    """A request the deployment refuses. `message` is what Azure's inference server answers; `detail` (for
    the log, like the container log in Azure) says what exactly is wrong; `fault` marks a failure of the
    model rather than of the request (it counts towards the local automatic rollback)."""

    def __init__(self, message: str, status: ContainerStatus = ContainerStatus.BAD_REQUEST, *, detail: str = "",
                 fault: bool = False):
        super().__init__(message)
        self.status, self.detail, self.fault = status, detail or message, fault


def run_failed(detail: str) -> RequestError:
    """run() raised: Azure answers the generic message and logs the reason."""
    return RequestError(RUN_FAILED, ContainerStatus.RUN_FAILED, detail=detail)


def json_type_name(value: Any) -> str:
    """How a log line names the JSON type a caller sent."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def is_json_content_type(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Flask's `request.is_json`, which the inference server checks: application/json or application/*+json."""
    for name, value in headers:
        if name == b"content-type":
            mimetype = value.split(b";", 1)[0].strip().lower()
            return mimetype == b"application/json" or (mimetype.startswith(b"application/")
                                                         and mimetype.endswith(b"+json"))
    return False


def parse_body(raw: bytes) -> dict[str, Any]:
    """The body as the inference server reads it (ObjectInput._parse_post_input)."""
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        if raw:
            raise RequestError(f"POST body could not be decoded as JSON: {exc}") from None
        raise RequestError("POST body is empty. Expecting a JSON dictionary.") from None
    except UnicodeDecodeError:  # not caught by the server's parser: its catch-all answers 500
        raise RequestError(INTERNAL_ERROR, ContainerStatus.RUN_FAILED, detail="body is not UTF-8 text") from None
    if not isinstance(body, dict):
        raise RequestError("POST body should be a JSON dictionary.")
    return body


def input_records(body: dict[str, Any]) -> list[dict[str, Any]]:
    """`input_data` (pandas split orientation) as records, so the runtime validates them once for all."""
    if "input_data" not in body:
        raise RequestError(NO_INPUT_DATA)
    value = body["input_data"]
    if not isinstance(value, dict):
        raise run_failed(f"input_data is {json_type_name(value)}, not a split-oriented frame")
    extra = sorted(set(value) - SPLIT_KEYS)
    if extra:
        raise run_failed(f"input_data has key(s) {extra} besides columns/index/data")
    columns, rows = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise run_failed("input_data.columns must be a list of column names")
    if not isinstance(rows, list):
        raise run_failed(f"input_data.data is {json_type_name(rows)}, not a list of rows")
    index = value.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(rows)):
        raise run_failed(f"input_data.index must be a list with one entry per row ({len(rows)})")
    if len(rows) > MAX_RECORDS:
        raise RequestError(f"the request has {len(rows)} rows; at most {MAX_RECORDS} per request (local limit)")
    records = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise run_failed(f"row {i} is not an array of {len(columns)} values in input_data.columns order")
        records.append(dict(zip(columns, row, strict=True)))
    return records


def predictions(labels: list[str]) -> list[int]:
    """What MLflow's pyfunc predict returns for our classifier (label encoding no=0, yes=1), as JSON."""
    positive = schema.POSITIVE
    return [1 if label == positive else 0 for label in labels]
