"""Azure ML's run events for the local runs, delivered with Event Grid's semantics (local/eventgrid_delivery.py).

Shapes: "Azure Machine Learning as an Event Grid source"
(https://learn.microsoft.com/azure/event-grid/event-schema-machine-learning): RunCompleted for a completed run,
RunStatusChanged otherwise, `data.runId` the v1 run id or the v2 job name, `topic` the workspace ARM id.
Deliveries run on their own thread, so a slow subscriber never holds up training; what is still to deliver is saved
with the run and resumed after a restart."""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

from local.eventgrid_delivery import Outcome, RetryPolicy, decide, post_event
from local.pipeline_endpoint.runs import LocalRun, RunStatus, RunStore, now_iso

log = logging.getLogger("pipeline-endpoint.events")

SUBSCRIPTION_NAME = "RETRAIN-RUN-EVENTS"


def event_for(run: LocalRun) -> dict[str, Any]:
    completed = run.status == RunStatus.COMPLETED
    properties = {"azureml.runsource": "azureml.PipelineRun", "dataset_version":
                  run.parameters.get("dataset_version", "")}
    if run.error:
        properties["error"] = run.error
    data = {"experimentId": str(uuid.uuid5(uuid.NAMESPACE_URL, run.experiment)),
            "experimentName": run.experiment, "runId": run.run_id, "runType": "azureml.PipelineRun",
            "runTags": {k: v for k, v in run.parameters.items() if k in ("trigger_id", "reason")},
            "runProperties": properties}
    if not completed:
        # spelled as the documented RunStatusChanged sample spells it ("runStatus": "failed"), while the run GET
        # says "Failed": consumers must compare it case-insensitively
        data["runStatus"] = str(run.status).lower()
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run.topic}/runs/{run.run_id}/{run.status}")),
            "topic": run.topic, "subject": f"experiments/{data['experimentId']}/runs/{run.run_id}",
            "eventType": "Microsoft.MachineLearningServices." + ("RunCompleted" if completed else "RunStatusChanged"),
            "eventTime": run.ended or now_iso(), "data": data, "dataVersion": "2", "metadataVersion": "1"}


class RunEventDelivery:
    """One subscription (EVENTGRID_WEBHOOK_URL): each ended run's event, retried on Event Grid's schedule."""

    def __init__(self, url: str | None, store: RunStore, *, policy: RetryPolicy = RetryPolicy(),
                 session: requests.Session | None = None, clock: Callable[[], float] = time.time):
        self.url = url
        self.store = store
        self.policy = policy
        self.session = session or requests.Session()
        self.clock = clock
        self._due: list[tuple[float, int, LocalRun]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="pipeline-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()

    def enqueue(self, run: LocalRun) -> None:
        """Queue an ended run's event, at its saved next attempt if a previous process had scheduled one."""
        if not self.url or not run.ended_pending_delivery:
            return
        with self._wake:
            heapq.heappush(self._due, (run.delivery_due or self.clock(), next(self._seq), run))
            self._wake.notify_all()

    def pending(self) -> list[tuple[float, str]]:
        """(next attempt, run id) of what is queued, soonest first."""
        with self._wake:
            return [(due, run.run_id) for due, _, run in sorted(self._due, key=lambda item: item[:2])]

    def _next(self) -> LocalRun | None:
        with self._wake:
            while not self._stopping:
                if self._due and self._due[0][0] <= self.clock():
                    return heapq.heappop(self._due)[2]
                self._wake.wait(max(0.0, self._due[0][0] - self.clock()) if self._due else None)
            return None

    def _loop(self) -> None:
        while (run := self._next()) is not None:
            try:
                self.attempt(run)
            except Exception:  # a broken event must not stop the deliveries of others
                log.exception("run %s: event delivery crashed", run.run_id)

    def attempt(self, run: LocalRun) -> Outcome:
        event = event_for(run)
        now = self.clock()
        if run.delivery_first_at is None:
            run.delivery_first_at = now
        status = post_event(self.session, self.url, event, delivery_count=run.delivery_attempts, data_version="2",
                            subscription=SUBSCRIPTION_NAME)
        run.delivery_attempts += 1
        decision = decide(status, attempts_made=run.delivery_attempts, first_at=run.delivery_first_at, now=now,
                          policy=self.policy)
        if decision.outcome is Outcome.DELIVERED:
            run.delivered, run.delivery_due = True, None
            log.info("run %s: delivered %s (attempt %d)", run.run_id, event["eventType"], run.delivery_attempts)
        elif decision.outcome is Outcome.DROPPED:
            run.delivery_dropped, run.delivery_due = True, None
            log.error("run %s: event dropped: %s (no dead-letter destination; kept in deadletter.json)",
                      run.run_id, decision.why)
            (self.store.runs_dir / run.run_id / "deadletter.json").write_text(json.dumps(event, indent=2))
        else:
            run.delivery_due = decision.due
            log.warning("run %s: event delivery answered %s (attempt %d); next in %.0f s", run.run_id, status,
                        run.delivery_attempts, decision.due - now)
            with self._wake:
                heapq.heappush(self._due, (decision.due, next(self._seq), run))
        self.store.save(run)
        return decision.outcome
