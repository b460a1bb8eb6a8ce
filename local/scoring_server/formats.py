"""The three /score request formats (the seeds' `data`, AutoML v2 `Inputs`, MLflow `input_data`): recognize
one, turn it into records, and render the answer in the shape that format promises."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_RECORDS = 10_000
FORMATS_HINT = ('{"data": [{column: value, ...}]}, {"Inputs": {"data": [...]}, "GlobalParameters": {...}} '
                'or {"input_data": {"columns": [...], "data": [[...]]}}')
AUTOML_METHODS = ("predict", "predict_proba")


def json_type_name(value: Any) -> str:
    """How an error message names the JSON type a caller sent."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


class RequestError(ValueError):
    """A malformed scoring request; the message is returned to the caller with `status`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ScoringRequest:
    kind: str  # "data" (the seeds' contract) | "automl" (AutoML v2) | "mlflow" (input_data, split)
    records: list
    method: str = "predict"


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise RequestError("request body is empty; expected a JSON object")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise RequestError("request body is not valid JSON: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RequestError(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
                           f"(char {exc.pos})") from None


def parse_scoring_request(payload: Any) -> ScoringRequest:
    """Recognize the request format; the records themselves are validated by the runtime, the same for all."""
    if not isinstance(payload, dict):
        raise RequestError(f"request body must be a JSON object ({FORMATS_HINT}), got {json_type_name(payload)}")
    present = [key for key in ("data", "Inputs", "input_data") if key in payload]
    if not present:
        raise RequestError(f"request body has no `data`, `Inputs` or `input_data` field; expected {FORMATS_HINT}")
    if len(present) > 1:
        raise RequestError(f"request body has {' and '.join(f'`{k}`' for k in present)}; send exactly one format")
    if present[0] == "data":
        request = ScoringRequest("data", _records(payload["data"], "`data`"))
    elif present[0] == "Inputs":
        request = _automl_request(payload)
    else:
        request = ScoringRequest("mlflow", _split_records(payload["input_data"]))
    if len(request.records) > MAX_RECORDS:
        raise RequestError(f"the request has {len(request.records)} records; at most {MAX_RECORDS} per request")
    return request


def _records(value: Any, name: str) -> list:
    if not isinstance(value, list):
        raise RequestError(f"{name} must be a list of records, got {json_type_name(value)}")
    return value


def _automl_request(payload: dict) -> ScoringRequest:
    inputs, params = payload["Inputs"], payload.get("GlobalParameters", {})
    if not isinstance(inputs, dict):
        raise RequestError(f'`Inputs` must be an object {{"data": [records]}}, got {json_type_name(inputs)}')
    if "data" not in inputs:
        raise RequestError('`Inputs` has no `data` field; expected {"Inputs": {"data": [{column: value, ...}]}}')
    if not isinstance(params, dict):
        raise RequestError(f"`GlobalParameters` must be an object, got {json_type_name(params)}")
    method = params.get("method", "predict")
    if method not in AUTOML_METHODS:
        raise RequestError(f'`GlobalParameters.method` must be "predict" or "predict_proba", got '
                           f"{json.dumps(method)[:40]}")
    return ScoringRequest("automl", _records(inputs["data"], "`Inputs.data`"), method)


def _split_records(value: Any) -> list[dict[str, Any]]:
    """MLflow's split orientation ({"columns", "data", "index"?}) as records, so validation is shared."""
    if not isinstance(value, dict):
        raise RequestError('`input_data` must be an object {"columns": [...], "data": [[...]]} (split '
                           f"orientation), got {json_type_name(value)}")
    columns, rows = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError("`input_data.columns` must be a list of column names")
    if not isinstance(rows, list):
        raise RequestError(f"`input_data.data` must be a list of rows, got {json_type_name(rows)}")
    index = value.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(rows)):
        raise RequestError(f"`input_data.index` must be a list with one entry per row ({len(rows)})")
    records = []
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise RequestError(f"record {i} must be an array of values in `input_data.columns` order, got "
                               f"{json_type_name(row)}")
        if len(row) != len(columns):
            raise RequestError(f"record {i} has {len(row)} values but `input_data.columns` names {len(columns)}")
        records.append(dict(zip(columns, row, strict=True)))
    return records


def render(request: ScoringRequest, answer: dict[str, list], version: str) -> dict[str, Any]:
    """The answer in the shape the request's format promises."""
    if request.kind == "data":
        return {"result": answer["result"], "probabilities": answer["probabilities"], "model_version": version}
    if request.kind == "mlflow":
        return {"predictions": answer["result"]}
    if request.method == "predict_proba":
        return {"Results": [[1.0 - p, p] for p in answer["probabilities"]]}
    return {"Results": answer["result"]}
