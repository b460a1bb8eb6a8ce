"""The scheduled drift check: newest data against the data the live model was trained on."""

from __future__ import annotations

import io
import time

import pandas as pd

from shared import telemetry
from shared.domain.drift import compare
from shared.domain.records import AuditRecord, new_id
from shared.services.retrain import PipelineTarget, request_retrain


def check_drift(*, past_due: bool, threshold: float, share: float, min_rows: int, target: PipelineTarget,
                datasets, models, runs, pipeline, audit, function: str = "drift_timer") -> AuditRecord:
    with telemetry.span("drift_check", kind="consumer", past_due=past_due) as span:
        record = _check_drift(past_due=past_due, threshold=threshold, share=share, min_rows=min_rows, target=target,
                              datasets=datasets, models=models, runs=runs, pipeline=pipeline, audit=audit,
                              function=function)
        span.set(outcome=record.outcome, trigger_id=record.id, dataset_version=record.dataset_version)
    return record


def _check_drift(*, past_due: bool, threshold: float, share: float, min_rows: int, target: PipelineTarget,
                 datasets, models, runs, pipeline, audit, function: str) -> AuditRecord:
    record = AuditRecord(id=new_id("timer-"), trigger="timer", function=function, started_at=time.time(),
                         source="schedule" + (" (past due)" if past_due else ""))
    audit.save(record)
    live = models.live()
    latest = datasets.latest()
    if live is None or latest is None:
        record.finish("skipped", "skipped: no live model or no dataset yet")
        audit.save(record)
        return record
    record.model_version = live.version
    record.dataset_version = latest.version
    if latest.version == live.dataset_version:
        record.finish("no_drift", f"skipped: live model v{live.version} was trained on the newest data "
                                  f"(v{latest.version})")
        audit.save(record)
        return record
    if runs.in_flight():
        record.finish("skipped", "skipped: a retrain is already in flight")
        audit.save(record)
        return record
    reference_ds = datasets.get(live.dataset_version)
    reference = pd.read_csv(io.BytesIO(datasets.read(reference_ds)))
    current = pd.read_csv(io.BytesIO(datasets.read(latest)))
    result = compare(reference, current, threshold=threshold, share=share, min_rows=min_rows)
    record.stage("checked")
    record.data["drift"] = {"drift_share": result.drift_share, "verdict": result.verdict, "rows": result.rows,
                            "drifted_columns": [c for c, v in result.columns.items() if v["drifted"]]}
    if not result.drifted:
        record.finish("no_drift", f"no drift: {result.verdict} (v{latest.version} vs v{live.dataset_version})")
        audit.save(record)
        return record
    request_retrain(latest, reason="drift", record=record, pipeline=pipeline, runs=runs, target=target,
                    models=models)
    record.finish("submitted", f"drift: {result.verdict}; retrain submitted")
    audit.save(record)
    return record
