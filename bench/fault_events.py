"""Duplicate and out-of-order run events for the fault campaign (bench/faults.py).

Event Grid delivers at least once and in no promised order, so each ended run's completion is also posted by the
bench, racing the endpoint's own delivery: the terminal event twice at once, later a stale `RunStatusChanged`
Running and the terminal event once more.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable

import requests

from bench.fault_endpoint import EndpointRun
from local.pipeline_endpoint import local_workspace_id


def run_event(run: EndpointRun, *, status: str | None = None) -> dict:
    """Azure ML's event for `run` in the Event Grid schema (as the local endpoint sends it; `runId` is the job
    name for a v2 job, https://learn.microsoft.com/azure/event-grid/event-schema-machine-learning); `status`
    forces a RunStatusChanged with that runStatus (a stale `Running` after the end)."""
    completed = status is None and run.status == "Completed"
    data = {"experimentId": str(uuid.uuid5(uuid.NAMESPACE_URL, run.experiment)),
            "experimentName": run.experiment, "runId": run.run_id, "runType": "azureml.PipelineRun",
            "runTags": {"trigger_id": run.trigger_id}, "runProperties": {"azureml.runsource": "azureml.PipelineRun"}}
    if not completed:
        data["runStatus"] = (status or run.status).lower()  # the documented sample's spelling ("failed")
    return {"id": str(uuid.uuid4()), "topic": local_workspace_id(),  # the stack's AZUREML_WORKSPACE_ID
            "subject": f"experiments/{data['experimentId']}/runs/{run.run_id}",
            "eventType": "Microsoft.MachineLearningServices." + ("RunCompleted" if completed else "RunStatusChanged"),
            "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "data": data, "dataVersion": "2",
            "metadataVersion": "1"}


class EventReplayer:
    """For each run that ends: its terminal event twice at once, then after `later_s` a stale RunStatusChanged
    Running and the terminal event once more. Retries while the host is down (connection refused) or answers 5xx."""

    def __init__(self, list_runs: Callable[[], list[EndpointRun]], webhook_url: Callable[[], str],
                 later_s: float = 8.0):
        self.list_runs, self.webhook_url, self.later_s = list_runs, webhook_url, later_s
        self.seen: set[str] = set()
        self.sent: Counter = Counter()
        self.answers: Counter = Counter()
        self.pending = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="event-replayer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def busy(self) -> bool:
        with self._lock:
            return self.pending > 0

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                runs = self.list_runs()
            except Exception:  # noqa: S112 - the endpoint is busy or restarting: look again in a second
                continue
            for run in runs:
                if run.finished and run.run_id not in self.seen:
                    self.seen.add(run.run_id)
                    for _ in range(2):
                        self._spawn(run, None, "terminal_duplicate", 0.0)
                    self._spawn(run, "Running", "stale_running", self.later_s)
                    self._spawn(run, None, "terminal_late", self.later_s + 2)

    def _spawn(self, run: EndpointRun, status: str | None, label: str, delay: float) -> None:
        with self._lock:
            self.pending += 1
        threading.Thread(target=self._send, args=(run, status, label, delay), daemon=True).start()

    def _send(self, run: EndpointRun, status: str | None, label: str, delay: float) -> None:
        try:
            if delay and self._stop.wait(delay):
                return
            event = run_event(run, status=status)
            answer = "not sent"
            for _ in range(60):
                try:
                    # Event Grid waits 30 s for an answer, then counts the try as failed
                    response = requests.post(self.webhook_url(), json=[event], timeout=30,
                                             headers={"aeg-event-type": "Notification"})
                    answer = str(response.status_code)
                    if response.status_code < 500:
                        break
                except requests.RequestException as exc:
                    answer = type(exc).__name__
                with self._lock:
                    self.answers[f"retry:{answer}"] += 1
                if self._stop.wait(1.0):
                    return
            with self._lock:
                self.sent[label] += 1
                self.answers[answer] += 1
        finally:
            with self._lock:
                self.pending -= 1
