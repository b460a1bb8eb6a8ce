"""Azure ML run events as Event Grid delivers them (Microsoft.MachineLearningServices.*)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    def outcome(self) -> str:
        """`completed`, `failed`, or `ignore` (a status change that ends nothing)."""
        if self.status == "Completed":
            return "completed"
        if self.status in ("Failed", "Canceled"):
            return "failed"
        return "ignore"


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
        status = "Completed"
    else:
        status = str(data.get("runStatus") or "Unknown")
    return RunEvent(event_id=event_id, event_type=event_type, run_id=str(run_id),
                    experiment=str(data.get("experimentName") or ""), status=status,
                    run_type=data.get("runType"), tags=dict(data.get("runTags") or {}),
                    properties=dict(data.get("runProperties") or {}))
