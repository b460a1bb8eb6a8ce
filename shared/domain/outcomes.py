"""The words the service stores and answers for what happened: audit outcomes, run statuses, outbox request
statuses and the pipeline statuses it acts on — each defined here once.

They are `StrEnum`s: a member *is* its string (`Outcome.DEPLOYED == "deployed"`, `json.dumps` and the table
store write the plain value), so records written before these classes existed read and compare as before, and
every stored or returned spelling is unchanged. These spellings are contracts (audit rows, the runs table,
`GET /api/runs`, the CLI): add members, never rename one.

One idea can have two spellings, one per contract, on purpose:

- `Outcome` (snake_case) is an audit record's `outcome`: what one trigger execution ended in (`kept_champion`).
- `RunStatus` (PascalCase, as Azure ML spells run statuses) is a run record's `status` in the runs table and in
  `GET /api/runs`: where a pipeline run we submitted stands (`KeptChampion`).
- `RequestStatus` (lower case) is a retrain request's `status` in the outbox table.
- `PipelineStatus` is a pipeline run's status as the pipeline clients normalise Azure ML's (`Completed`).
- `JobStatus` (lower case) is a drift profiling job's state.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """An audit record's `outcome` (shared.domain.records.AuditRecord)."""

    # still open
    IN_PROGRESS = "in_progress"  # the record of a trigger that has started
    QUEUED = "queued"  # its retrain request waits in the outbox
    PROFILING = "profiling"  # drift check: the window went to a profiling job
    CONCLUDING = "concluding"  # drift check: its job ended and one instance is writing the verdict
    # ended
    SUBMITTED = "submitted"  # a pipeline run was submitted
    DUPLICATE = "duplicate"  # the same upload, event or Idempotency-Key again: nothing new happened
    REJECTED = "rejected"  # bad input (an upload, an HTTP request): refused with the reason
    FAILED = "failed"
    SKIPPED = "skipped"  # drift check: nothing to check, or a check already running
    NO_DRIFT = "no_drift"  # drift check: no drift
    SUPERSEDED = "superseded"  # a newer request took its place (latest wins)
    IGNORED = "ignored"  # a run event that ends nothing or is not about a run of ours
    FOREIGN_TOPIC = "foreign_topic"  # a run event not from the configured workspace: ignored
    REJECTED_EVENT = "rejected_event"  # a run event claiming a terminal status the pipeline does not confirm
    UNCONFIRMED = "unconfirmed"  # a run event the pipeline could not be asked about: left for redelivery
    KEPT_CHAMPION = "kept_champion"  # completion: new model registered, the live one kept (RunStatus.KEPT_CHAMPION)
    PROMOTED = "promoted"  # the promotion decision's "replace it"; also a promote by hand (`retrain promote`)
    DEPLOYED = "deployed"  # completion: the new model serves (RunStatus.DEPLOYED)
    ROLLED_BACK = "rolled_back"  # the new model failed its check after the switch, or `retrain rollback`
    RECONCILED = "reconciled"  # a reconcile timer pass
    INTERRUPTED = "interrupted"  # an invocation killed half-way, closed by the reconcile timer

    @property
    def is_open(self) -> bool:
        """Whether a record with this outcome is still waiting for something (shown as Running by the API)."""
        return self in _OPEN


_OPEN = frozenset({Outcome.IN_PROGRESS, Outcome.PROFILING, Outcome.CONCLUDING})


class RunStatus(StrEnum):
    """A run record's `status` (shared.domain.records.RunRecord) and the `status` of `GET /api/runs` answers:
    Submitted -> Handling -> Deployed | KeptChampion | RolledBack | Failed."""

    SUBMITTED = "Submitted"  # waiting for its completion (event or reconcile timer)
    HANDLING = "Handling"  # one completion claimed it and is registering / deploying
    DEPLOYED = "Deployed"  # Outcome.DEPLOYED
    KEPT_CHAMPION = "KeptChampion"  # Outcome.KEPT_CHAMPION
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    # only in API answers about what is not (yet) a run: a queued request, an audit record still open
    QUEUED = "Queued"
    SUPERSEDED = "Superseded"
    RUNNING = "Running"


IN_FLIGHT = (RunStatus.SUBMITTED, RunStatus.HANDLING)  # a run record not ended yet


class RequestStatus(StrEnum):
    """A retrain request's `status` in the outbox (shared.adapters.outbox.RetrainRequest):
    pending -> submitting -> submitted | failed | unconfirmed; pending -> superseded."""

    PENDING = "pending"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    UNCONFIRMED = "unconfirmed"  # a submit that may have started a run: confirmed before anything else goes


class PipelineStatus(StrEnum):
    """A pipeline run's status as the pipeline clients report it (shared.adapters.pipeline_client normalises the
    v1 and v2 spellings to these)."""

    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    UNKNOWN = "Unknown"


ENDED = (PipelineStatus.COMPLETED, PipelineStatus.FAILED, PipelineStatus.CANCELED)  # a pipeline run that finished


class JobStatus(StrEnum):
    """A drift profiling job's state (shared.adapters.drift_offload.JobState; the local job's status file)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
