"""Azure ML run events as Event Grid delivers them (Microsoft.MachineLearningServices.*).

An event is a claim, not a fact: anyone holding the Event Grid system key can post one. Its `topic` must be the
workspace's ARM id, and a terminal status it claims is acted on only once the pipeline's run GET confirms it
(`shared.services.on_run_completed`). Event schema (topic = /subscriptions/{subscription-id}/resourceGroups/
{resource-group-name}/providers/Microsoft.MachineLearningServices/workspaces/{workspace-name}, data.runStatus):
https://learn.microsoft.com/azure/event-grid/event-schema-machine-learning
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.domain.outcomes import Outcome, PipelineStatus

RUN_COMPLETED = "microsoft.machinelearningservices.runcompleted"
RUN_STATUS_CHANGED = "microsoft.machinelearningservices.runstatuschanged"


@dataclass(frozen=True)
class RunEvent:
    event_id: str
    event_type: str
    run_id: str
    experiment: str
    status: str  # Completed | Failed | Canceled | Running | ...
    run_type: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> RunEnd:
        """`completed`, `failed`, or `ignore` (a status change that ends nothing)."""
        return status_outcome(self.status)


class RunEnd(StrEnum):
    """What a run status means for a run record (never stored: it picks the branch)."""

    COMPLETED = "completed"
    FAILED = "failed"  # Failed, Canceled
    IGNORE = "ignore"  # a status that ends nothing


def status_outcome(status: str) -> RunEnd:
    """What a run status means for a run record, compared case-insensitively: `completed`, `failed` (Failed,
    Canceled) or `ignore`. The documented RunStatusChanged sample says `"runStatus": "failed"`
    (https://learn.microsoft.com/azure/event-grid/event-schema-machine-learning) while the run GET says `Failed`
    (tests/parity/test_azureml_contracts.py posts the documented samples)."""
    value = (status or "").strip().lower()
    if value == "completed":
        return RunEnd.COMPLETED
    if value in ("failed", "canceled", "cancelled"):
        return RunEnd.FAILED
    return RunEnd.IGNORE


class EventVerdict(StrEnum):
    """Audit outcomes of a run event that was not acted on because it could not be believed (members of
    shared.domain.outcomes.Outcome, which defines the strings)."""

    FOREIGN_TOPIC = Outcome.FOREIGN_TOPIC.value  # not from the configured workspace: ignored
    REJECTED = Outcome.REJECTED_EVENT.value  # claims a terminal status the pipeline's run GET does not confirm
    UNCONFIRMED = Outcome.UNCONFIRMED.value  # the pipeline could not be asked: left for redelivery / reconcile


def normalized_resource_id(value: str) -> str:
    """ARM resource ids compare case-insensitively: the ARM RPC contract has providers treat ids
    case-insensitively on requests (https://github.com/Azure/azure-resource-manager-rpc/blob/master/v1.0/
    resource-api-reference.md, as cited in https://github.com/Azure/azure-rest-api-specs/issues/8353), and Azure ML
    documents the resource group name as case-insensitive (https://learn.microsoft.com/dotnet/api/
    microsoft.azure.powershell.cmdlets.machinelearningservices.models.imachinelearningservicesidentity.
    resourcegroupname). Leading/trailing slashes are not part of the identity."""
    return (value or "").strip().strip("/").lower()


def topic_problem(topic: str | None, workspace_id: str) -> str | None:
    """Why an event's topic is not the configured workspace, or None when it is."""
    expected = normalized_resource_id(workspace_id)
    if not expected:
        return "AZUREML_WORKSPACE_ID is not set, so no run event can be attributed to the workspace"
    if normalized_resource_id(topic or "") != expected:
        shown = (topic or "")[:300].encode("unicode_escape").decode("ascii")
        return f"topic {shown or '(none)'!r} is not the workspace {workspace_id.strip()!r}"
    return None


def confirmation_problem(claimed: str, pipeline_status: str) -> str | None:
    """Why the pipeline's status does not confirm the terminal status an event claims, or None when it does
    (both end the run the same way: completed, or failed/canceled)."""
    wanted = status_outcome(claimed)
    found = status_outcome(pipeline_status)
    if found == RunEnd.IGNORE:
        return f"the event says {claimed!r} but the pipeline says the run is {pipeline_status!r} (not ended)"
    if found != wanted:
        return f"the event says {claimed!r} but the pipeline says the run ended {pipeline_status!r}"
    return None


class EventError(ValueError):
    pass


def parse_run_event(*, event_id: str, event_type: str, subject: str, data: dict[str, Any]) -> RunEvent:
    kind = (event_type or "").lower()
    if kind not in (RUN_COMPLETED, RUN_STATUS_CHANGED):
        raise EventError(f"not an Azure ML run event: {event_type!r}")
    if not isinstance(data, dict):
        raise EventError("event data is not an object")
    run_id = data.get("runId")
    if not run_id and "/runs/" in (subject or ""):
        run_id = subject.rsplit("/runs/", 1)[1]
    if not run_id:
        raise EventError("event carries no runId")
    if kind == RUN_COMPLETED:
        status = PipelineStatus.COMPLETED.value
    else:
        status = str(data.get("runStatus") or PipelineStatus.UNKNOWN.value)
    return RunEvent(event_id=event_id, event_type=event_type, run_id=str(run_id),
                    experiment=str(data.get("experimentName") or ""), status=status,
                    run_type=data.get("runType"), tags=dict(data.get("runTags") or {}),
                    properties=dict(data.get("runProperties") or {}))
