"""Submit a retrain of one dataset version to the training pipeline, whoever asked for it, or record the run an
earlier attempt of the same request started; and `RetrainDispatch`, the bundle of what asking for a retrain needs
(every trigger that asks gets it from bootstrap as one argument)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from shared import telemetry
from shared.domain import pipeline_params
from shared.domain.records import AuditRecord, DatasetVersion, RunRecord
from shared.ports import AuditLog, DatasetLog, ModelLog, PipelineClient, PipelineRunState, RetrainOutbox, RunLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineTarget:
    """What every submission carries: where the data lives for the pipeline and the experiment to run in."""

    experiment: str
    datastore: str
    data_input: str
    budget_s: int
    evaluation_percent: int = 10  # rows held out for the champion/challenger comparison
    evaluation_rows: str = "auto"  # which: EvaluationRows (hash, newest, auto)
    # MAX_TIME_BUDGET_S: the most training time a caller's `time_budget_s` may ask for.
    max_budget_s: int = pipeline_params.DEFAULT_MAX_TIME_BUDGET_S


@dataclass(frozen=True)
class DispatchPolicy:
    coalesce_s: float = 10.0  # COALESCE_S: an upload waits this long for a newer one (0: no coalescing)
    deadline_s: float = 3600.0  # SUBMIT_DEADLINE_S: retries of one request stop after this
    backoff_s: float = 5.0  # first retry delay; doubles each attempt
    max_backoff_s: float = 300.0
    lease_s: float = 120.0  # a claim older than this was abandoned by its instance


@dataclass(frozen=True)
class RetrainDispatch:
    """What asking for a retrain needs, from the outbox to the pipeline run (shared.services.dispatch): the
    request waits in `outbox`, is submitted to `pipeline` with `target`'s experiment and data, its run recorded in
    `runs`, its trigger's record in `audit`; `datasets` resolves the version, `models` names the champion."""

    outbox: RetrainOutbox
    runs: RunLog
    pipeline: PipelineClient
    datasets: DatasetLog
    audit: AuditLog
    models: ModelLog
    target: PipelineTarget
    policy: DispatchPolicy = DispatchPolicy()


def request_retrain(dataset: DatasetVersion, *, reason: str, record: AuditRecord, retrain: RetrainDispatch,
                    parameters: dict[str, Any] | None = None, uploaded_at: float | None = None) -> RunRecord:
    """`reason` is the trigger kind (pipeline_params.Reason). `parameters`: what the caller chose
    (pipeline_params.CALLER_PARAMETERS, `time_budget_s` capped at `target.max_budget_s`) plus what the service's own
    triggers add (SERVICE_PARAMETERS); anything else raises ParameterError before the POST, whichever route stored
    it. The dataset, the lineage, the held-out share and the champion are set here, after the caller's values, so
    no caller value can replace them. When a model with a registered digest is live (`retrain.models`), the run
    also scores it on the held-out rows, so the completion handler can compare champion and challenger on the
    same rows."""
    target = retrain.target
    chosen = pipeline_params.validate_caller(
        parameters or {}, max_time_budget_s=target.max_budget_s,
        allowed=pipeline_params.CALLER_PARAMETERS + pipeline_params.SERVICE_PARAMETERS)
    params = {"time_budget_s": target.budget_s, **chosen,
              "dataset_name": dataset.name, "dataset_version": dataset.version, "reason": reason,
              "trigger_id": record.id, "evaluation_percent": target.evaluation_percent,
              "evaluation_rows": target.evaluation_rows,
              **_champion(retrain.models)}
    pipeline_params.validate(params)  # every string to its pattern: the pipeline gets data, never code
    data_paths = {target.data_input: {"DataStoreName": target.datastore,
                                      "RelativePath": dataset.path}}
    record.stage("posted")
    with telemetry.span("submit_pipeline", kind="client", experiment=target.experiment, reason=reason,
                        dataset_version=dataset.version, trigger_id=record.id) as span:
        run = retrain.pipeline.submit(experiment=target.experiment, parameters=params, data_paths=data_paths)
        span.set(run_id=run.run_id)
        traceparent = telemetry.inject().get("traceparent", "")
    return record_run(run, dataset, reason=reason, record=record, retrain=retrain, uploaded_at=uploaded_at,
                      traceparent=traceparent)


def find_started_run(record: AuditRecord, retrain: RetrainDispatch) -> tuple[PipelineRunState | None, str]:
    """The run an earlier attempt of this request started (looked up by its trigger id, the request's id), or None,
    and the lookup's traceparent. Neither pipeline service deduplicates a submission, so this runs before a request
    is submitted again; its errors propagate (the caller must not resubmit when it could not look)."""
    with telemetry.span("find_pipeline_run", kind="client", trigger_id=record.id) as span:
        run = retrain.pipeline.find_run(record.id)
        span.set(run_id=run.run_id if run is not None else "")
        return run, telemetry.inject().get("traceparent", "")


def record_run(run: PipelineRunState, dataset: DatasetVersion, *, reason: str, record: AuditRecord,
               retrain: RetrainDispatch, uploaded_at: float | None = None, traceparent: str = "") -> RunRecord:
    """The run recorded as this request's (a new submission, or one an earlier attempt started and `find_started_run`
    found): the audit record points at it and the run log holds it once — an attempt that died after recording it
    left it there already."""
    record.stage("accepted")
    record.run_id = run.run_id
    record.dataset_version = dataset.version
    existing = retrain.runs.get(run.run_id)
    if existing is not None:
        return existing
    run_record = RunRecord(run_id=run.run_id, trigger_id=record.id, trigger=record.trigger, reason=reason,
                           dataset_version=dataset.version, experiment=retrain.target.experiment,
                           submitted_at=time.time(), uploaded_at=uploaded_at, traceparent=traceparent)
    retrain.runs.create(run_record)
    return run_record


def _champion(models: ModelLog) -> dict[str, Any]:
    """The live model, from the registry only. Without a registered digest the run could not prove it scored
    those bytes (and the completion handler would not use its figures), so it is not asked to load it at all;
    a registry row whose folder or digest does not pass its pattern is not sent either (the run trains, and the
    comparison falls back to the recorded figures), rather than failing every retrain."""
    live = models.live()
    if live is None or not live.model_dir or not getattr(live, "digest", ""):
        return {}
    champion = {"champion_model": live.model_dir, "champion_version": live.version, "champion_digest": live.digest}
    try:
        return pipeline_params.validate(champion)
    except pipeline_params.ParameterError as exc:
        log.warning("live model v%s is not sent as the champion: %s", live.version, exc)
        return {}
