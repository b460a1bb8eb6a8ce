"""The scoring request and answer of an Azure ML no-code MLflow deployment, as a client builds and reads them: the
one format of the Azure scorer, the local one and the deployer's smoke test (the local endpoint serves exactly
it: local/scoring_server/formats.py).

Request: a pandas DataFrame in split orientation under `input_data`
(https://learn.microsoft.com/azure/machine-learning/how-to-deploy-mlflow-models-online-endpoints, "Invoke the
endpoint"). Answer: a bare JSON list, one prediction per row (our classifier's 0/1).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from shared.domain import schema


def mlflow_request(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The body MLflow no-code deployments read: a pandas DataFrame in split orientation under `input_data`."""
    columns: list[str] = []
    for record in records:
        columns.extend(c for c in record if c not in columns)
    data = [[_jsonable(record.get(c)) for c in columns] for record in records]
    return {"input_data": {"columns": columns, "index": list(range(len(records))), "data": data}}


def parse_predictions(raw: Any, rows: int) -> list[Any]:
    """The scoring answer as a list of one prediction per row; ValueError says what is wrong with it."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    answer = raw
    if isinstance(raw, str):
        try:
            answer = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"the answer is not JSON: {clip(raw, 200)!r}") from None
        if isinstance(answer, str):  # some scoring scripts JSON-encode their JSON once more
            try:
                answer = json.loads(answer)
            except json.JSONDecodeError:
                raise ValueError(f"the answer is a string, not predictions: {clip(answer, 200)!r}") from None
    if isinstance(answer, dict):
        for key in ("predictions", "result", "output"):
            if key in answer:
                answer = answer[key]
                break
    if not isinstance(answer, list):
        raise ValueError(f"expected a JSON list of {rows} predictions, got {json_type_name(answer)}")
    if len(answer) != rows:
        raise ValueError(f"expected {rows} predictions (one per smoke record), got {len(answer)}")
    for index, value in enumerate(answer):
        scalar = isinstance(value, str | int | float | bool) and not (isinstance(value, float) and math.isnan(value))
        if not (scalar or isinstance(value, dict)):
            raise ValueError(f"prediction {index} is {json_type_name(value)}, not a label or score")
    return answer


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy / pandas scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def label(prediction: Any) -> Any:
    """Our classifier predicts 0/1 (label encoding no=0, yes=1); callers get the labels."""
    if isinstance(prediction, bool) or not isinstance(prediction, int | float):
        return prediction
    return schema.TARGET_VALUES[int(prediction)] if prediction in (0, 1) else prediction
