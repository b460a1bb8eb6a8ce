"""What the services need from the outside world, as `typing.Protocol`s: one module, so that a reader who meets
`deployer.deploy(...)` in a service finds here the one interface it means, and an editor who renames a method finds
every implementation through tests/unit/test_ports.py.

Narrow on purpose: a Protocol lists only the methods the services call, so that the local and the Azure adapters
(shared.adapters.*) both satisfy it. The services import this module and the domain, never an adapter; bootstrap
picks the implementations. The few errors a port raises that a service tells apart live here too, for the same
reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pandas as pd

from shared.domain.profile import Profile
from shared.domain.records import AuditRecord, DatasetVersion, ModelVersion, RunRecord
from shared.domain.retrain_request import RetrainRequest
from shared.domain.uploads import ListedBlob, UploadedBlob

# ----------------------------------------------------------------------------------------------- errors


class PipelineError(RuntimeError):
    """A pipeline call failed; the message says what to do and never contains the token."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None,
                 maybe_started: bool = False):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # the service's Retry-After (seconds), for the outbox's next attempt
        self.maybe_started = maybe_started  # no answer, or a 5xx from a gateway: the run may exist anyway


class RunLookupUnavailable(PipelineError):
    """This pipeline offers no way to look a run up by its trigger id (a v1 pipeline endpoint URL): the dispatcher
    cannot confirm what an earlier attempt started."""


class DeploymentError(RuntimeError):
    """A deployment or rollback the endpoint did not carry out; the message says why."""


class IdempotencyKeyError(ValueError):
    """The Idempotency-Key header is unusable (400)."""


# ----------------------------------------------------------------------------------------- value shapes


class PipelineRunState(Protocol):
    """A pipeline run as the pipeline endpoint reports it."""

    @property
    def run_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def raw(self) -> dict[str, Any]: ...
    @property
    def outputs(self) -> dict[str, Any]: ...
    @property
    def finished(self) -> bool: ...


class IdempotencyStart(Protocol):
    """What `Idempotency.begin` found: `state` new | replay | conflict | in_progress, and for a replay the first
    answer."""

    @property
    def state(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def body(self) -> dict | None: ...
    @property
    def location(self) -> str | None: ...
    @property
    def owner(self) -> str | None: ...


class RateVerdict(Protocol):
    @property
    def allowed(self) -> bool: ...
    @property
    def retry_after_s(self) -> int: ...


class LeaseClaim(Protocol):
    """Whether a lease was taken, and otherwise who holds it since when (and where to follow it)."""

    @property
    def acquired(self) -> bool: ...
    @property
    def holder(self) -> str: ...
    @property
    def since(self) -> float: ...
    @property
    def location(self) -> str: ...


class WindowPlanView(Protocol):
    """The files of a drift window and their total size (shared.adapters.drift_offload.WindowPlan)."""

    @property
    def since(self) -> float: ...
    @property
    def files(self) -> list[Any]: ...
    @property
    def total_bytes(self) -> int: ...


class JobResult(Protocol):
    """A profiling job's state: `status` a JobStatus; `profile` once completed; `detail` when failed."""

    @property
    def status(self) -> str: ...
    @property
    def profile(self) -> Profile | None: ...
    @property
    def detail(self) -> str: ...


# -------------------------------------------------------------------------------------------- records


class AuditLog(Protocol):
    """One audit record per trigger (shared.adapters.record_stores.AuditStore)."""

    def save(self, record: AuditRecord) -> None: ...
    def finish(self, record: AuditRecord, outcome: str, detail: str) -> AuditRecord: ...
    def get(self, record_id: str) -> AuditRecord | None: ...
    def with_outcome(self, outcome: str) -> list[AuditRecord]: ...
    def claim(self, record_id: str, expected: str, outcome: str) -> AuditRecord | None: ...
    def newest(self, page: int = 100) -> Iterator[AuditRecord]: ...


class RunLog(Protocol):
    """The pipeline runs this service submitted (shared.adapters.record_stores.RunStore)."""

    def create(self, run: RunRecord) -> None: ...
    def get(self, run_id: str) -> RunRecord | None: ...
    def claim(self, run_id: str) -> RunRecord | None: ...
    def release(self, run_id: str) -> bool: ...
    def save(self, run: RunRecord) -> None: ...
    def list(self) -> list[RunRecord]: ...
    def in_flight(self) -> list[RunRecord]: ...
    def newest(self, limit: int, status: str | None = None) -> list[RunRecord]: ...


class ModelLog(Protocol):
    """Registered model versions and which one is live (shared.adapters.record_stores.ModelRegistry)."""

    def register(self, *, run_id: str, dataset_version: int, model_dir: str, metrics: dict,
                 digest: str = "") -> ModelVersion: ...
    def list(self) -> list[ModelVersion]: ...
    def get(self, version: int) -> ModelVersion | None: ...
    def set_live(self, version: int) -> None: ...
    def previous_live(self) -> ModelVersion | None: ...
    def live(self) -> ModelVersion | None: ...


class DatasetLog(Protocol):
    """Immutable dataset versions (shared.adapters.dataset_store.DatasetStore)."""

    def claim_content(self, content_hash: str, source_blob: str, source_etag: str) -> dict | None: ...
    def find_by_source(self, source_blob: str, source_etag: str) -> DatasetVersion | None: ...
    def find_by_hash(self, content_hash: str) -> DatasetVersion | None: ...
    def register(self, data: bytes, *, content_hash: str, rows: int, columns: int, source_blob: str,
                 source_etag: str, dialect: str) -> DatasetVersion: ...
    def get(self, version: int) -> DatasetVersion | None: ...
    def list(self) -> list[DatasetVersion]: ...
    def latest(self) -> DatasetVersion | None: ...
    def read(self, version: DatasetVersion) -> bytes: ...


class QuarantineArea(Protocol):
    """Where refused uploads are kept with their reasons (shared.adapters.quarantine.Quarantine)."""

    def put(self, source: str, data: bytes, reason: dict, *, remove_source: bool = True) -> str: ...
    def put_refused_name(self, name_sha256: str, record_id: str, data: bytes, reason: dict,
                         metadata: dict[str, str]) -> str: ...


class UploadSource(Protocol):
    """The incoming container read back by name (shared.adapters.incoming.IncomingBlobs): an upload whose delivery
    was killed half-way is handled again from the blob."""

    def read(self, name: str) -> UploadedBlob | None: ...

    def listed(self, modified_after: float) -> list[ListedBlob]: ...


class RetrainOutbox(Protocol):
    """Retrain requests waiting to be submitted (shared.adapters.outbox.Outbox)."""

    def get(self, request_id: str) -> RetrainRequest | None: ...
    def list(self, status: str | None = None) -> list[RetrainRequest]: ...
    def enqueue(self, request: RetrainRequest) -> RetrainRequest | None: ...
    def claim(self, now: float) -> RetrainRequest | None: ...
    def release(self, request_id: str, *, error: str, next_attempt_at: float, expected: str = ...,
                deadline: float | None = None, maybe_started: bool = False) -> RetrainRequest | None: ...
    def finish(self, request_id: str, status: str, *, run_id: str | None = None,
               error: str = "") -> RetrainRequest: ...
    def stale(self, now: float, lease_s: float) -> list[RetrainRequest]: ...


# ------------------------------------------------------------------------------ pipeline and deployment


class PipelineClient(Protocol):
    """Submits the training pipeline, reports a run, and finds the run a request started (v2 batch endpoint, v1
    published pipeline; the same clients against the local endpoint). Neither service deduplicates a submission, so
    the dispatcher calls `find_run` before submitting a request again: None means no run was started for it."""

    def submit(self, *, experiment: str, parameters: dict[str, Any],
               data_paths: dict[str, dict[str, str]] | None = None) -> PipelineRunState: ...
    def get_run(self, run_id: str) -> PipelineRunState: ...
    def find_run(self, trigger_id: str) -> PipelineRunState | None: ...


class Deployer(Protocol):
    """Blue/green deployment of a model version (local scoring server, or a managed online endpoint)."""

    def deploy(self, *, model_dir: str, version: int, smoke_records: list[dict[str, Any]] | None = None,
               digest: str = "") -> dict: ...
    def rollback(self, *, from_version: int | str | None = None) -> dict: ...


class RolloutQueue(Protocol):
    """Hands a finished run's deployment work to the queue-triggered rollout (function_app/rollout_queue.py), so
    the Event Grid delivery is answered in seconds (Storage queue in Azure, Azurite locally)."""

    def put(self, message: dict[str, Any]) -> None: ...


class Scorer(Protocol):
    """The live endpoint's scoring route: {"model_version", "result", ...}."""

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]: ...


# ------------------------------------------------------------------------------------- webhook state


class Replays(Protocol):
    """Remembers signed requests; False when this one was seen before (shared.adapters.webhook_state)."""

    def remember(self, signature_hex: str, timestamp: int, now: float) -> bool: ...


class RateLimit(Protocol):
    """A per-caller request budget per window."""

    @property
    def enabled(self) -> bool: ...
    def hit(self, caller: str, now: float) -> RateVerdict: ...


class Refusals(Protocol):
    """Refusals before authentication, counted per caller and minute (not audited one by one)."""

    @property
    def limit(self) -> int: ...
    def throttled(self, caller: str, now: float) -> RateVerdict: ...
    def record(self, caller: str, *, route: str, status: int, reason: str, now: float) -> int: ...


class Idempotency(Protocol):
    """Stored answers by `Idempotency-Key` (raises IdempotencyKeyError for a key it cannot hold)."""

    def begin(self, key: str, request_hash: str, now: float) -> IdempotencyStart: ...
    def complete(self, key: str, status: int, body: dict, location: str | None = None, *,
                 owner: str | None = None, now: float | None = None) -> bool: ...
    def abandon(self, key: str, *, owner: str | None = None) -> bool: ...


class Lease(Protocol):
    """One holder at a time across instances (shared.adapters.webhook_state.SingleFlight)."""

    def acquire(self, holder: str, now: float, location: str = "") -> LeaseClaim: ...
    def release(self, holder: str) -> bool: ...


# ---------------------------------------------------------------------------------------------- drift


class InferenceReader(Protocol):
    """The scoring inputs the endpoint collected between `since` and `until`."""

    def __call__(self, since: float, until: float) -> pd.DataFrame: ...


class ReportWriter(Protocol):
    """Stores a drift report; returns where (container/name)."""

    def __call__(self, name: str, html: str) -> str: ...


class ReportReader(Protocol):
    """Reads back what the reports container holds (a drift report, the replay's figures): None when absent or
    larger than `max_bytes`. `name` is one the service wrote, never a caller's text."""

    def read(self, name: str, *, max_bytes: int) -> bytes | None: ...


class WindowStore(Protocol):
    """The drift window's files and the reference profile staged for a profiling job."""

    def plan(self, since: float, until: float, dataset_paths: list[str]) -> WindowPlanView: ...
    def staged_reference(self, check_id: str) -> Profile: ...


class DriftJobs(Protocol):
    """Profiles a large drift window in parallel (an Azure ML job, or local processes)."""

    name: str
    storage: WindowStore

    def submit(self, check_id: str, reference: Profile, plan: Any, policy: Any) -> str: ...
    def result(self, job_id: str) -> JobResult: ...


