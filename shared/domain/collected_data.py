"""Azure ML's data collector: where it writes on the blob store and the JSON-lines envelope of each line.

One format for both sides: the local scoring server writes it, the drift check (and its offloaded job) reads it,
so what is tested locally is what Azure produces.

Layout (https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data, "Store collected data
in Blob Storage"): by default the workspace blob store (`azureml://datastores/workspaceblobstore/paths/
modelDataCollector`), each collection under
`modelDataCollector/{endpoint_name}/{deployment_name}/{collection_name}/{yyyy}/{MM}/{dd}/{HH}/{instance_id}.jsonl`
with the hourly rolling rate (DataCollector.rolling_rate; the REST `RollingRateType`).

Envelope, one JSON object per line (same page, the `model_inputs` samples): `specversion` "1.0", `id`, `source`
(the deployment's ARM id), `type` `azureml.inference.{collection}`, `datacontenttype` "application/json",
`time` (UTC, whole seconds, `Z`), `data` (the logged pandas DataFrame as records), `contentrange`
(`bytes 0-{n-1}/{n}` of the data), `correlationid`, `xrequestid`, `modelversion`, `collectdatatype`, `agent`.
Requests close in time may be batched into one line (same page, "Data collector batching"), so a line's `data`
can hold the rows of several requests. A payload over 4 MB is stored apart and its line's `data` is a URL
(`"datainblob": "true"`); such lines carry no rows here.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

ROOT = "modelDataCollector"
HOUR_FOLDER = "%Y/%m/%d/%H/"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
# What the monitoring SDK's Collector logs (a DataFrame) and the model version it reports: the SDK does not know
# the deployment's model, so the documented samples say "default" (the deployment folder tells the model).
COLLECT_DATA_TYPE = "pandas.core.frame.DataFrame"
MODEL_VERSION = "default"


class Collection(StrEnum):
    """The two collections Azure ML's MLflow scoring script logs when the data collector is on (and the names
    model monitoring recognises)."""

    MODEL_INPUTS = "model_inputs"
    MODEL_OUTPUTS = "model_outputs"


def deployments_prefix(endpoint: str) -> str:
    """The folder whose sub-folders are the endpoint's deployments (blue, green, ...)."""
    return f"{ROOT}/{endpoint}/"


def collection_prefix(endpoint: str, deployment: str, collection: Collection) -> str:
    return f"{deployments_prefix(endpoint)}{deployment}/{collection}/"


def hour_folder(at: float) -> str:
    """`yyyy/MM/dd/HH/` of a POSIX time (UTC)."""
    return datetime.fromtimestamp(at, UTC).strftime(HOUR_FOLDER)


def window_hours(since: float, until: float) -> list[str]:
    """The hour folders a window [since, until] touches, oldest first."""
    start = int(since // 3600) * 3600
    return [hour_folder(t) for t in range(start, int(until) + 1, 3600)]


def blob_name(endpoint: str, deployment: str, collection: Collection, at: float) -> str:
    """Where a batch first logged at `at` goes; the file name is the batch's instance id."""
    return f"{collection_prefix(endpoint, deployment, collection)}{hour_folder(at)}{uuid.uuid4()}.jsonl"


def deployment_source(workspace_id: str, endpoint: str, deployment: str) -> str:
    """The envelope's `source`: the deployment's ARM id under the workspace's."""
    return f"{workspace_id.rstrip('/')}/onlineEndpoints/{endpoint}/deployments/{deployment}"


def envelope(collection: Collection, *, source: str, at: float, rows: list[dict[str, Any]],
             correlation_id: str, agent: str) -> dict[str, Any]:
    """One collected line, field for field as the documented `model_inputs` sample."""
    size = len(json.dumps(rows, separators=(",", ":"), default=str).encode("utf-8"))
    return {"specversion": SPEC_VERSION, "id": str(uuid.uuid4()), "source": source,
            "type": f"azureml.inference.{collection}", "datacontenttype": CONTENT_TYPE,
            "time": datetime.fromtimestamp(at, UTC).strftime(TIME_FORMAT), "data": rows,
            "contentrange": f"bytes 0-{size - 1}/{size}", "correlationid": correlation_id,
            "xrequestid": correlation_id, "modelversion": MODEL_VERSION, "collectdatatype": COLLECT_DATA_TYPE,
            "agent": agent}


class EnvelopeError(ValueError):
    """A line that is not a collector envelope."""


@dataclass(frozen=True)
class CollectedLine:
    at: float  # POSIX seconds of the envelope's `time`
    rows: list[dict[str, Any]]  # the logged DataFrame's records; [] for a payload stored apart


def parse_line(line: str) -> CollectedLine:
    """A collector line's time and rows; EnvelopeError when it is not an envelope."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EnvelopeError(f"not JSON ({exc.msg})") from None
    if not isinstance(entry, dict) or "time" not in entry or "data" not in entry:
        raise EnvelopeError('expected a data collector envelope {"specversion", "time", "data", ...}')
    try:
        at = datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00"))
    except ValueError:
        raise EnvelopeError(f'"time" is not ISO 8601: {entry["time"]!r}') from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    data = entry["data"]
    if str(entry.get("datainblob", "")).lower() == "true":
        return CollectedLine(at.timestamp(), [])
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise EnvelopeError('"data" is not a list of records (a logged DataFrame)')
    return CollectedLine(at.timestamp(), data)


def rows_in_window(text: str, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
    """The rows of a collector file whose line time is in [since, until); EnvelopeError names the bad line."""
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed = parse_line(line)
        except EnvelopeError as exc:
            raise EnvelopeError(f"line {number}: {exc}") from None
        if (since is None or parsed.at >= since) and (until is None or parsed.at < until):
            rows.extend(parsed.rows)
    return rows
