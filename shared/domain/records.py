"""Record types the services pass around: dataset versions, pipeline runs, audit records, model versions."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.domain.outcomes import Outcome, RunStatus


def new_id(prefix: str = "") -> str:
    """Sortable by creation time (ms), unique by a random tail."""
    return f"{prefix}{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: int
    container: str
    path: str  # blob path inside the container: {name}/v{N}/data.csv
    content_hash: str
    rows: int
    columns: int
    source_blob: str
    source_etag: str
    dialect: str
    registered_at: float

    @property
    def label(self) -> str:
        return f"v{self.version}"


@dataclass
class RunRecord:
    """A pipeline run we submitted; the completion handler only acts on runs found here."""

    run_id: str
    trigger_id: str  # audit id of the trigger that submitted it
    trigger: str
    reason: str
    dataset_version: int
    experiment: str
    submitted_at: float
    uploaded_at: float | None = None  # when the data that caused it landed (blob uploads)
    status: str = RunStatus.SUBMITTED  # Submitted -> Handling -> Deployed | KeptChampion | RolledBack | Failed
    finished_at: float | None = None
    model_version: int | None = None
    detail: str = ""
    claimed_at: float | None = None  # when a completion (event or reconcile) started handling it
    traceparent: str = ""  # W3C trace context of the submission: the completion continues the same trace


@dataclass
class AuditRecord:
    """One line of the audit trail: one per trigger execution, updated as its stages pass."""

    id: str
    trigger: str  # blob | timer | http | eventgrid | cli
    function: str
    started_at: float
    outcome: str = Outcome.IN_PROGRESS  # an Outcome (stored as its plain string)
    detail: str = ""
    source: str = ""
    dataset_version: int | None = None
    run_id: str | None = None
    model_version: int | None = None
    finished_at: float | None = None
    stages: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def stage(self, name: str, at: float | None = None) -> None:
        self.stages[name] = time.time() if at is None else at

    def finish(self, outcome: str, detail: str = "") -> None:
        self.outcome = outcome
        self.detail = detail or self.detail
        self.finished_at = time.time()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelVersion:
    version: int
    run_id: str
    dataset_version: int
    model_dir: str
    metrics: dict[str, Any]
    registered_at: float
    digest: str = ""  # shared.scoring.model_digest of the folder at registration: what every load path checks
