"""Azure ML's data collector on blob storage: the drift check reads what the live model is asked, in the layout and
envelope the collector writes in Azure (`shared.domain.collected_data`), and the local scoring server writes the
same, so one reader is tested locally against Azurite.

Reader side (`read_window`, `window_blobs`): the `model_inputs` rows of every deployment of the endpoint whose
line time is in [since, until). Only the hour folders of the window are listed
(`modelDataCollector/{endpoint}/{deployment}/model_inputs/{yyyy}/{MM}/{dd}/{HH}/`), deployments found by listing
the endpoint's folder (blue, green and any earlier one: a deployment deleted after a swap keeps its data).

Writer side (`InferenceCollector`, the local scoring server's stand-in for the collector Azure ML runs next to a
deployment): `add()` only appends to an in-memory buffer, so scoring never waits for storage; a background thread
writes when it holds `max_records` records or is `max_age_s` old, one `model_inputs` and one `model_outputs` blob
per deployment and hour, one envelope line per request. A full buffer drops the oldest requests and counts them;
a failed `model_inputs` write is retried on the next flush (a failed `model_outputs` write is counted and dropped:
nothing here reads outputs, and retrying the pair would duplicate the inputs the drift check reads).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import pandas as pd
from azure.core.credentials import TokenCredential
from azure.storage.blob import BlobProperties, BlobServiceClient, ContainerClient

from shared.domain import schema
from shared.domain.collected_data import (
    Collection,
    blob_name,
    deployment_source,
    deployments_prefix,
    envelope,
    hour_folder,
    rows_in_window,
    window_hours,
)

log = logging.getLogger(__name__)

AGENT = "local.scoring_server"  # the envelope's `agent`: who wrote the line (Azure: azureml-ai-monitoring/x.y)
# The envelope's `source` for a local deployment: the ARM id shape, in a workspace that exists nowhere.
LOCAL_WORKSPACE_ID = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/"
                      "Microsoft.MachineLearningServices/workspaces/local")


# ------------------------------------------------------------------------------------------------- reader

def deployment_folders(container: ContainerClient, endpoint: str) -> list[str]:
    """`modelDataCollector/{endpoint}/{deployment}/` of every deployment that collected something."""
    return sorted(item.name for item in container.walk_blobs(name_starts_with=deployments_prefix(endpoint),
                                                               delimiter="/")
                  if item.name.endswith("/"))


def window_blobs(container: ContainerClient, endpoint: str, since: float, until: float,
                 collection: Collection = Collection.MODEL_INPUTS) -> Iterator[BlobProperties]:
    """The collector blobs of the window's hour folders, every deployment of the endpoint."""
    for folder in deployment_folders(container, endpoint):
        for hour in window_hours(since, until):
            yield from container.list_blobs(name_starts_with=f"{folder}{collection}/{hour}")


def read_window(container: ContainerClient, *, endpoint: str, since: float, until: float | None = None) -> pd.DataFrame:
    """The feature columns of every `model_inputs` row logged in [since, until)."""
    until = time.time() if until is None else until
    rows: list[dict] = []
    for blob in window_blobs(container, endpoint, since, until):
        text = container.download_blob(blob.name).readall().decode("utf-8-sig")
        rows.extend(rows_in_window(text, since, until))
    frame = pd.DataFrame(rows)
    return frame.reindex(columns=list(schema.FEATURES)) if len(frame) else frame


def collector_container(blobs: BlobServiceClient, container: str, *, account_url: str = "",
                        credential: TokenCredential | None = None) -> ContainerClient:
    """The container the collector writes to: on `account_url` (in Azure the workspace's storage account, whose
    `workspaceblobstore` container holds `modelDataCollector/`) or, without it, on the app's own account."""
    if account_url:
        return ContainerClient(account_url, container, credential=credential)
    return blobs.get_container_client(container)


# ------------------------------------------------------------------------------------------------- writer

@dataclass(frozen=True)
class Scored:
    """One answered request: what the collector logs of it."""

    at: float
    deployment: str
    request_id: str
    inputs: list[dict[str, Any]]
    outputs: list[Any]


class InferenceCollector:
    def __init__(self, write: Callable[[str, bytes], None], *, endpoint: str, workspace_id: str = LOCAL_WORKSPACE_ID,
                 max_records: int = 5000, max_age_s: float = 10.0, max_buffered: int = 200_000,
                 clock: Callable[[], float] = time.time):
        self._write, self._clock = write, clock
        self.endpoint, self.workspace_id = endpoint, workspace_id
        self.max_records, self.max_age_s, self.max_buffered = max_records, max_age_s, max_buffered
        self._buffer: deque[Scored] = deque()
        self._buffered_records = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {"requests": 0, "records": 0, "written_records": 0, "blobs": 0, "dropped_records": 0,
                      "write_errors": 0}

    def add(self, inputs: list[dict[str, Any]], outputs: list[Any], *, deployment: str,
            request_id: str = "") -> None:
        """Called on the scoring path: O(1), no I/O. `outputs` are the model's predictions, one per input row."""
        scored = Scored(self._clock(), deployment, request_id or str(uuid.uuid4()), inputs, outputs)
        with self._lock:
            self._buffer.append(scored)
            self._buffered_records += len(inputs)
            self.stats["requests"] += 1
            self.stats["records"] += len(inputs)
            while self._buffered_records > self.max_buffered and len(self._buffer) > 1:
                dropped = self._buffer.popleft()
                self._buffered_records -= len(dropped.inputs)
                self.stats["dropped_records"] += len(dropped.inputs)
            full = self._buffered_records >= self.max_records
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write what is buffered; returns the input records written (0 when empty or every write failed)."""
        with self._lock:
            batch = list(self._buffer)
            self._buffer.clear()
            self._buffered_records = 0
        written = 0
        for (deployment, _), group in groupby(sorted(batch, key=_blob_key), key=_blob_key):
            written += self._write_group(deployment, list(group))
        return written

    def _write_group(self, deployment: str, group: list[Scored]) -> int:
        count = sum(len(s.inputs) for s in group)
        try:
            self._write(*self._blob(Collection.MODEL_INPUTS, deployment, group))
        except Exception as exc:  # keep the requests for the next try; scoring is never affected
            self.stats["write_errors"] += 1
            log.warning("inference data: writing %d records failed (%s); will retry", count, type(exc).__name__)
            with self._lock:
                self._buffer.extendleft(reversed(group))
                self._buffered_records += count
            return 0
        self.stats["written_records"] += count
        self.stats["blobs"] += 1
        try:
            self._write(*self._blob(Collection.MODEL_OUTPUTS, deployment, group))
            self.stats["blobs"] += 1
        except Exception as exc:
            self.stats["write_errors"] += 1
            log.warning("inference data: model_outputs of %d requests not written (%s)", len(group),
                        type(exc).__name__)
        return count

    def _blob(self, collection: Collection, deployment: str, group: list[Scored]) -> tuple[str, bytes]:
        source = deployment_source(self.workspace_id, self.endpoint, deployment)
        lines = [json.dumps(envelope(collection, source=source, at=s.at, rows=_rows(collection, s),
                                     correlation_id=s.request_id, agent=AGENT),
                            default=str, separators=(",", ":")) for s in group]
        return (blob_name(self.endpoint, deployment, collection, group[0].at),
                ("\n".join(lines) + "\n").encode("utf-8"))

    def _oldest_age(self) -> float:
        with self._lock:
            return self._clock() - self._buffer[0].at if self._buffer else 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=min(1.0, self.max_age_s))
            self._wake.clear()
            if self._buffered_records >= self.max_records or self._oldest_age() >= self.max_age_s:
                self.flush()

    def start(self) -> InferenceCollector:
        self._thread = threading.Thread(target=self._run, name="inference-collector", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Write what is left, then end the thread (on server shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()


def _blob_key(scored: Scored) -> tuple[str, str]:
    return scored.deployment, hour_folder(scored.at)


def _rows(collection: Collection, scored: Scored) -> list[dict[str, Any]]:
    """The DataFrame the collector logs, as records. Outputs: Azure ML's MLflow scoring script logs
    `pd.DataFrame(model.predict(...))`, a single column named 0 (Azure/azureml-assets,
    assets/inference/environments/mlflow-py312-inference/context/mlflow_score_script.py, `run`)."""
    if collection is Collection.MODEL_INPUTS:
        return scored.inputs
    return [{"0": value} for value in scored.outputs]


def blob_writer(container_client: ContainerClient) -> Callable[[str, bytes], None]:
    def write(name: str, data: bytes) -> None:
        container_client.upload_blob(name, data, overwrite=False)
    return write
