"""A run of the local pipeline endpoint (a v1 PipelineRun or a v2 batch job) and where it is kept."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from shared.private_files import private_dir


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class RunKind(StrEnum):
    PUBLISHED = "published"  # v1: POST .../PipelineRuns/PipelineSubmit/{pipelineId}
    BATCH = "batch"  # v2: POST {batch endpoint}/jobs


class RunStatus(StrEnum):
    """The v2 spelling (azure-ai-ml _restclient/arm_ml_service/models/_enums.py JobStatus); v1 shows it as
    RunStatus with a StatusCode of its own (LocalRun.to_json). Kept apart from the product's
    shared.domain.outcomes.PipelineStatus on purpose: the emulator states Azure's values, so a change to the
    product's enum cannot quietly change what the emulator answers."""

    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"


ACTIVE = frozenset({RunStatus.NOT_STARTED, RunStatus.QUEUED, RunStatus.RUNNING})
_V1_STATUS_CODE = {"NotStarted": "NotStarted", "Queued": "NotStarted", "Running": "Running",
                   "Completed": "Finished", "Failed": "Failed", "Canceled": "Canceled"}


@dataclass
class LocalRun:
    run_id: str  # v1 run id; v2 job name
    pipeline_id: str
    experiment: str
    parameters: dict[str, str]
    data_paths: dict[str, dict[str, str]]
    topic: str  # the workspace ARM id
    status: str = RunStatus.NOT_STARTED
    created: str = field(default_factory=now_iso)
    started: str | None = None
    ended: str | None = None
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    kind: str = RunKind.PUBLISHED
    # its terminal event: reached the subscriber / given up (Event Grid's policy) / attempts so far / first attempt
    # and next attempt (epoch seconds), kept so a restarted endpoint resumes the schedule (at least once)
    delivered: bool = False
    delivery_dropped: bool = False
    delivery_attempts: int = 0
    delivery_first_at: float | None = None
    delivery_due: float | None = None

    @property
    def ended_pending_delivery(self) -> bool:
        return self.status not in ACTIVE and not self.delivered and not self.delivery_dropped

    def to_json(self) -> dict[str, Any]:
        """The v1 PipelineRun answer."""
        return {"Id": self.run_id, "PipelineId": self.pipeline_id, "ExperimentName": self.experiment,
                "RunSource": "SDK", "RunType": "HTTP", "ParameterAssignments": self.parameters,
                "DataPathAssignments": self.data_paths,
                "Status": {"StatusCode": _V1_STATUS_CODE[self.status], "RunStatus": self.status,
                           "CreationTime": self.created, "StartTime": self.started, "EndTime": self.ended,
                           "StatusDetail": self.error},
                "Outputs": self.outputs}


class RunStore:
    """`<runs_dir>/<run id>/run.json`, written whole (tmp + rename) under a lock: the worker and the event delivery
    both save a run."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = runs_dir
        self._lock = threading.Lock()
        private_dir(runs_dir)  # 0700, also when it exists: run logs and inputs are private

    def save(self, run: LocalRun) -> None:
        with self._lock:
            folder = private_dir(self.runs_dir / run.run_id)
            tmp = folder / "run.json.tmp"
            tmp.write_text(json.dumps(run.__dict__, indent=2))
            os.replace(tmp, folder / "run.json")

    def load_all(self) -> list[LocalRun]:
        runs = []
        for path in sorted(self.runs_dir.glob("*/run.json")):
            try:
                runs.append(LocalRun(**json.loads(path.read_text())))
            except (ValueError, TypeError):
                continue
        return runs
