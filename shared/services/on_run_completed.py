"""A pipeline run ended: register its model, deploy it, prove it answers, and record what happened."""

from __future__ import annotations

import io
import logging
import time
from urllib.parse import unquote, urlsplit

import pandas as pd

from shared.domain import schema
from shared.domain.records import AuditRecord, new_id
from shared.domain.run_events import EventError, parse_run_event

log = logging.getLogger(__name__)

SMOKE_ROWS = 5


def model_location(outputs: dict) -> str:
    model = outputs.get("model") or {}
    uri = model.get("Uri") or model.get("uri") or ""
    if not uri:
        raise RuntimeError("the run finished without a `model` output")
    parts = urlsplit(uri)
    return unquote(parts.path) if parts.scheme == "file" else uri


def smoke_records(datasets, dataset_version: int, rows: int = SMOKE_ROWS) -> list[dict]:
    """Real records from the data the model was trained on, without the label."""
    dataset = datasets.get(dataset_version)
    if dataset is None:
        return []
    head = datasets.read(dataset)
    frame = pd.read_csv(io.BytesIO(head), nrows=rows)
    return frame[list(schema.FEATURES)].to_dict(orient="records")


def on_run_completed(*, event_id: str, event_type: str, subject: str, data: dict, runs, pipeline, models,
                     deployer, scorer, datasets, audit, function: str = "run_completed") -> AuditRecord:
    record = AuditRecord(id=new_id("evt-"), trigger="eventgrid", function=function, started_at=time.time(),
                         source=f"{event_type} {subject}")
    record.data["event_id"] = event_id
    try:
        event = parse_run_event(event_id=event_id, event_type=event_type, subject=subject, data=data)
    except EventError as exc:
        record.finish("ignored", f"ignored: {exc}")
        audit.save(record)
        return record
    record.run_id = event.run_id
    if event.outcome == "ignore":
        record.finish("ignored", f"ignored: run status {event.status} ends nothing")
        audit.save(record)
        return record
    known = runs.get(event.run_id)
    if known is None:
        record.finish("ignored", "ignored: not a run this service submitted")
        audit.save(record)
        return record
    record.dataset_version = known.dataset_version
    run = runs.claim(event.run_id)
    if run is None:
        record.finish("duplicate", f"duplicate event: run already {known.status.lower()}")
        audit.save(record)
        return record
    record.stage("run_completed")
    audit.save(record)

    try:
        if event.outcome == "failed":
            detail = str(event.properties.get("error") or event.status)
            run.status, run.detail, run.finished_at = "Failed", detail, time.time()
            runs.save(run)
            record.finish("failed", f"run {event.status.lower()}: {detail}; nothing deployed")
            audit.save(record)
            return record

        finished = pipeline.get_run(event.run_id)
        model_dir = model_location(finished.outputs)
        metrics = dict(finished.outputs.get("metrics") or {})
        model = models.register(run_id=run.run_id, dataset_version=run.dataset_version, model_dir=model_dir,
                                metrics=metrics)
        record.model_version = model.version
        record.stage("registered")
        audit.save(record)

        samples = smoke_records(datasets, run.dataset_version)
        deployer.deploy(model_dir=model_dir, version=model.version, smoke_records=samples)
        record.stage("deployed")
        answer = scorer.score(samples[:1] if samples else [])
        if str(answer.get("model_version")) != str(model.version):
            raise RuntimeError(f"scoring endpoint answered with model {answer.get('model_version')}, "
                               f"expected {model.version}")
        record.stage("serving")
        models.set_live(model.version)
        run.status, run.model_version, run.finished_at = "Deployed", model.version, time.time()
        runs.save(run)
        record.data.update(metrics={k: metrics[k] for k in ("auc", "accuracy", "f1") if k in metrics},
                           smoke_answer=answer.get("result"))
        if run.uploaded_at:
            record.data["upload_to_serving_s"] = round(record.stages["serving"] - run.uploaded_at, 3)
        record.finish("deployed", f"model v{model.version} serving (holdout AUC "
                                  f"{metrics.get('auc', float('nan')):.4f})")
        audit.save(record)
        return record
    except Exception as exc:
        log.exception("completion of run %s failed", event.run_id)
        run.status, run.detail, run.finished_at = "Failed", f"completion failed: {exc}", time.time()
        runs.save(run)
        record.finish("failed", f"completion failed: {exc}")
        audit.save(record)
        return record
