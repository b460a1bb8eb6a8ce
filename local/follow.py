"""Follow one upload through the loop, stage by stage, from what the services record in storage.

Nothing here drives the loop: it only watches the audit trail, the pipeline run and the scoring endpoint,
so what it shows is what really happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.domain.records import AuditRecord

STAGES = [
    ("seen", "upload seen by the blob trigger"),
    ("validated", "validated"),
    ("registered", "dataset version registered"),
    ("accepted", "POST to the pipeline endpoint accepted"),
    ("training", "training"),
    ("run_completed", "run completed"),
    ("deployed", "model deployed"),
    ("answered", "sample scoring request answered"),
]


class LoopFailed(RuntimeError):
    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


@dataclass
class Progress:
    t0: float
    reached: dict[str, float] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    def mark(self, stage: str, at: float | None, report: Callable[[str, float], None]) -> None:
        if stage not in self.reached:
            self.reached[stage] = at if at is not None else time.time()
            report(stage, self.reached[stage] - self.t0)


def _find_upload_record(audit, source: str, t0: float) -> AuditRecord | None:
    candidates = [r for r in audit.list() if r.source == source and r.started_at >= t0 - 1]
    return candidates[-1] if candidates else None


def _find_completion(audit, run_id: str) -> AuditRecord | None:
    for record in reversed(audit.list()):
        if record.trigger == "eventgrid" and record.run_id == run_id and record.outcome != "duplicate":
            return record
    return None


def follow_upload(*, source: str, t0: float, audit, pipeline, scorer, sample: list[dict],
                  report: Callable[[str, float], None], timeout_s: float = 1800, poll_s: float = 0.5,
                  record_id: str | None = None) -> dict:
    """Block until the upload is served by a new model (returns a summary) or fails (raises LoopFailed).
    `record_id`: follow that trigger's audit record instead of the upload of `source` (a webhook request)."""
    progress = Progress(t0=t0)
    summary = progress.summary
    summary["status"] = "in_progress"
    deadline = time.time() + timeout_s
    upload = completion = None
    while time.time() < deadline:
        if upload is None or upload.outcome in ("in_progress", "queued"):  # queued: coalescing, or a run in flight
            upload = (audit.get(record_id) if record_id else _find_upload_record(audit, source, t0)) or upload
        if upload is not None:
            for stage in ("seen", "validated", "registered", "accepted"):
                if stage in upload.stages:
                    progress.mark(stage, upload.stages[stage], report)
            summary.update(dataset_version=upload.dataset_version, run_id=upload.run_id, audit_id=upload.id)
            if "accepted" in upload.stages:
                summary["upload_to_post_s"] = round(upload.stages["accepted"] - t0, 3)
            if upload.outcome in ("rejected", "failed", "duplicate", "superseded"):
                summary["status"] = upload.outcome
                raise LoopFailed(upload.detail, summary)
        run_id = upload.run_id if upload else None
        if run_id and "run_completed" not in progress.reached:
            run = pipeline.get_run(run_id)
            if run.status == "Running":
                progress.mark("training", None, report)
            if run.finished:
                progress.mark("training", None, report)
                summary["training_s"] = round(time.time() - progress.reached["training"], 3)
                if run.status != "Completed":
                    summary["status"] = "failed"
                    detail = (run.raw.get("Status") or {}).get("StatusDetail") or run.status
                    raise LoopFailed(f"pipeline run {run_id} {run.status.lower()}: {detail}", summary)
        if run_id:
            completion = _find_completion(audit, run_id) or completion
        if completion is not None:
            for stage in ("run_completed", "deployed"):
                if stage in completion.stages:
                    progress.mark(stage, completion.stages[stage], report)
            summary["model_version"] = completion.model_version
            summary["metrics"] = completion.data.get("metrics", {})
            if completion.outcome == "failed":
                summary["status"] = "failed"
                raise LoopFailed(completion.detail, summary)
            if completion.outcome == "deployed":
                answer = scorer.score(sample)
                if str(answer.get("model_version")) == str(completion.model_version):
                    progress.mark("answered", time.time(), report)
                    summary["upload_to_serving_s"] = round(progress.reached["answered"] - t0, 3)
                    summary["prediction"] = answer.get("result")
                    summary["status"] = "deployed"
                    return summary
        time.sleep(poll_s)
    summary["status"] = "timeout"
    raise LoopFailed(f"no served model within {timeout_s:.0f}s", summary)
