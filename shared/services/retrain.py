"""Submit a retrain of one dataset version to the published pipeline, whoever asked for it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from shared import telemetry
from shared.domain import pipeline_params
from shared.domain.records import AuditRecord, DatasetVersion, RunRecord


@dataclass(frozen=True)
class PipelineTarget:
    """What every submission carries: where the data lives for the pipeline and the experiment to run in."""

    experiment: str
    datastore: str
    data_input: str
    budget_s: int
    evaluation_percent: int = 10  # rows held out (by row hash) for the champion/challenger comparison


def request_retrain(dataset: DatasetVersion, *, reason: str, record: AuditRecord, pipeline, runs,
                    target: PipelineTarget, parameters: dict[str, Any] | None = None,
                    uploaded_at: float | None = None, models=None) -> RunRecord:
    """`models` (the registry): when a model is live, the run also scores it on the held-out rows, so the
    completion handler can compare champion and challenger on the same rows."""
    params = {"dataset_name": dataset.name, "dataset_version": dataset.version, "reason": reason,
              "trigger_id": record.id, "time_budget_s": target.budget_s,
              "evaluation_percent": target.evaluation_percent, **_champion(models), **(parameters or {})}
    pipeline_params.validate(params)  # the pipeline refuses unknown names anyway: fail before the POST
    data_paths = {target.data_input: {"DataStoreName": target.datastore,
                                      "RelativePath": dataset.path}}
    record.stage("posted")
    with telemetry.span("submit_pipeline", kind="client", experiment=target.experiment, reason=reason,
                        dataset_version=dataset.version, trigger_id=record.id) as span:
        run = pipeline.submit(experiment=target.experiment, parameters=params, data_paths=data_paths)
        span.set(run_id=run.run_id)
        traceparent = telemetry.inject().get("traceparent", "")
    record.stage("accepted")
    record.run_id = run.run_id
    record.dataset_version = dataset.version
    run_record = RunRecord(run_id=run.run_id, trigger_id=record.id, trigger=record.trigger, reason=reason,
                           dataset_version=dataset.version, experiment=target.experiment,
                           submitted_at=time.time(), uploaded_at=uploaded_at, traceparent=traceparent)
    runs.create(run_record)
    return run_record


def _champion(models) -> dict[str, Any]:
    live = models.live() if models is not None else None
    if live is None or not live.model_dir:
        return {}
    return {"champion_model": live.model_dir, "champion_version": live.version}
