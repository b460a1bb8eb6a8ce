"""Submit a retrain of one dataset version to the published pipeline, whoever asked for it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from shared.domain import pipeline_params
from shared.domain.records import AuditRecord, DatasetVersion, RunRecord


@dataclass(frozen=True)
class PipelineTarget:
    """What every submission carries: where the data lives for the pipeline and the experiment to run in."""

    experiment: str
    datastore: str
    data_input: str
    budget_s: int


def request_retrain(dataset: DatasetVersion, *, reason: str, record: AuditRecord, pipeline, runs,
                    target: PipelineTarget, parameters: dict[str, Any] | None = None,
                    uploaded_at: float | None = None) -> RunRecord:
    params = {"dataset_name": dataset.name, "dataset_version": dataset.version, "reason": reason,
              "trigger_id": record.id, "time_budget_s": target.budget_s, **(parameters or {})}
    pipeline_params.validate(params)  # the pipeline refuses unknown names anyway: fail before the POST
    data_paths = {target.data_input: {"DataStoreName": target.datastore,
                                      "RelativePath": dataset.path}}
    record.stage("posted")
    run = pipeline.submit(experiment=target.experiment, parameters=params, data_paths=data_paths)
    record.stage("accepted")
    record.run_id = run.run_id
    record.dataset_version = dataset.version
    run_record = RunRecord(run_id=run.run_id, trigger_id=record.id, trigger=record.trigger, reason=reason,
                           dataset_version=dataset.version, experiment=target.experiment,
                           submitted_at=time.time(), uploaded_at=uploaded_at)
    runs.create(run_record)
    return run_record
