"""Scoring inputs collected to blob storage, like Azure ML's model data collector: the drift check's view of
what the live model is actually asked about.

Writer side (`InferenceCollector`, used by the scoring server): `add()` only appends to an in-memory buffer, so
scoring never waits for storage; a background thread writes a batch when it holds `max_records` records or is
`max_age_s` old, as one JSON-lines blob `model_inputs/{yyyy}/{MM}/{dd}/{HH}/{uuid}.jsonl` (the data collector's
layout) with one `{"time", "model_version", "data": [records]}` line per request. A full buffer drops the
oldest requests and counts them (scoring never blocks on a slow store); failed writes are retried on the next
flush and counted.

Reader side (`read_window`): the records collected since a time, as one DataFrame of the feature columns.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from shared.domain import schema

log = logging.getLogger(__name__)

PREFIX = "model_inputs/"


def blob_name(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime(f"{PREFIX}%Y/%m/%d/%H/") + f"{uuid.uuid4().hex}.jsonl"


class InferenceCollector:
    def __init__(self, write: Callable[[str, bytes], None], *, max_records: int = 5000, max_age_s: float = 10.0,
                 max_buffered: int = 200_000, clock: Callable[[], float] = time.time):
        self._write, self._clock = write, clock
        self.max_records, self.max_age_s, self.max_buffered = max_records, max_age_s, max_buffered
        self._buffer: deque[tuple[float, str, list]] = deque()
        self._buffered_records = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {"requests": 0, "records": 0, "written_records": 0, "blobs": 0, "dropped_records": 0,
                      "write_errors": 0}

    def add(self, records: list[dict[str, Any]], model_version: str) -> None:
        """Called on the scoring path: O(1), no I/O."""
        with self._lock:
            self._buffer.append((self._clock(), model_version, records))
            self._buffered_records += len(records)
            self.stats["requests"] += 1
            self.stats["records"] += len(records)
            while self._buffered_records > self.max_buffered and len(self._buffer) > 1:
                _, _, dropped = self._buffer.popleft()
                self._buffered_records -= len(dropped)
                self.stats["dropped_records"] += len(dropped)
            full = self._buffered_records >= self.max_records
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write what is buffered as one blob; returns the records written (0 when empty or the write failed)."""
        with self._lock:
            batch = list(self._buffer)
            self._buffer.clear()
            self._buffered_records = 0
        if not batch:
            return 0
        lines = [json.dumps({"time": datetime.fromtimestamp(t, UTC).isoformat(), "model_version": v, "data": r},
                            default=str, separators=(",", ":")) for t, v, r in batch]
        count = sum(len(r) for _, _, r in batch)
        try:
            self._write(blob_name(batch[0][0]), ("\n".join(lines) + "\n").encode("utf-8"))
        except Exception as exc:  # keep the batch for the next try; scoring is never affected
            self.stats["write_errors"] += 1
            log.warning("inference data: writing %d records failed (%s); will retry", count, type(exc).__name__)
            with self._lock:
                self._buffer.extendleft(reversed(batch))
                self._buffered_records += count
            return 0
        self.stats["written_records"] += count
        self.stats["blobs"] += 1
        return count

    def _oldest_age(self) -> float:
        with self._lock:
            return self._clock() - self._buffer[0][0] if self._buffer else 0.0

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


def blob_writer(container_client) -> Callable[[str, bytes], None]:
    def write(name: str, data: bytes) -> None:
        container_client.upload_blob(name, data, overwrite=False)
    return write


def read_window(container_client, *, since: float, until: float | None = None) -> pd.DataFrame:
    """The feature columns of every record collected in [since, until); blobs are picked by their hour folder
    and each request line by its own time."""
    until = time.time() if until is None else until
    rows: list[dict] = []
    for hour in _hours(since, until):
        for blob in container_client.list_blobs(name_starts_with=hour):
            text = container_client.download_blob(blob.name).readall().decode("utf-8")
            for line in text.splitlines():
                if not line.strip():
                    continue
                entry = json.loads(line)
                at = datetime.fromisoformat(entry["time"]).timestamp()
                if since <= at < until:
                    rows.extend(r for r in entry.get("data") or [] if isinstance(r, dict))
    frame = pd.DataFrame(rows)
    return frame.reindex(columns=[c for c in schema.FEATURES]) if len(frame) else frame


def _hours(since: float, until: float) -> list[str]:
    start = int(since // 3600) * 3600
    return [datetime.fromtimestamp(t, UTC).strftime(f"{PREFIX}%Y/%m/%d/%H/") for t in range(start, int(until) + 1,
                                                                                            3600)]
