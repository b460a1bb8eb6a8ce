"""An external system asks for a retrain over HTTP: parse, resolve the dataset version, submit."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from shared import telemetry
from shared.domain import pipeline_params
from shared.domain.records import AuditRecord, new_id
from shared.services.retrain import PipelineTarget, request_retrain

MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: dict


def _problem(status: int, title: str, detail: str) -> HttpAnswer:
    return HttpAnswer(status, {"type": "about:blank", "title": title, "status": status, "detail": detail})


def retrain_http(body: bytes, *, target: PipelineTarget, datasets, pipeline, runs, audit, models=None,
                 function: str = "retrain_http") -> tuple[HttpAnswer, AuditRecord]:
    record = AuditRecord(id=new_id("http-"), trigger="http", function=function, started_at=time.time(),
                         source="POST /api/retrain")
    with telemetry.span("retrain_http", kind="server", trigger_id=record.id, size=len(body)) as span:
        answer = _handle(body, record, target=target, datasets=datasets, pipeline=pipeline, runs=runs, models=models)
        if answer.status >= 400:
            record.finish("rejected", f"rejected ({answer.status}): {answer.body.get('detail')}")
            span.fail(record.detail)
        span.set(status=answer.status, outcome=record.outcome)
    audit.save(record)
    return answer, record


def _handle(body: bytes, record: AuditRecord, *, target, datasets, pipeline, runs, models=None) -> HttpAnswer:
    if len(body) > MAX_BODY:
        return _problem(413, "Payload Too Large", f"body is {len(body)} bytes; the limit is {MAX_BODY}")
    try:
        request = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        return _problem(400, "Bad Request", f"body is not valid JSON: {exc}")
    if not isinstance(request, dict):
        return _problem(400, "Bad Request", "body must be a JSON object like {\"dataset\": \"latest\"}")
    dataset_ref = request.get("dataset")
    if not isinstance(dataset_ref, str | int) or dataset_ref == "":
        return _problem(400, "Bad Request", "field 'dataset' is required: \"latest\" or a version number")
    reason = str(request.get("reason") or "http")[:200]
    record.data["requested_by"] = str(request.get("requested_by") or "")[:200]
    if str(dataset_ref).lower() == "latest":
        dataset = datasets.latest()
        if dataset is None:
            return _problem(404, "Not Found", "no dataset version is registered yet; upload a file first")
    else:
        text = str(dataset_ref).lower().removeprefix("v")
        if not text.isdigit():
            return _problem(400, "Bad Request", f"field 'dataset' must be \"latest\" or a version number, "
                                                f"got {dataset_ref!r}")
        dataset = datasets.get(int(text))
        if dataset is None:
            return _problem(404, "Not Found", f"dataset version {dataset_ref} does not exist")
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        return _problem(400, "Bad Request", "field 'parameters' must be an object")
    reserved = sorted(set(parameters) & {"dataset_version", "dataset_name", "dataset_uri", "trigger_id", "reason"})
    if reserved:
        return _problem(400, "Bad Request", f"parameters.{reserved[0]} is set by the service; use the top-level "
                                            "'dataset' and 'reason' fields")
    try:
        parameters = pipeline_params.validate(parameters)
    except pipeline_params.ParameterError as exc:
        return _problem(400, "Bad Request", f"parameters.{exc.name}: {str(exc).split(': ', 1)[1]}")
    try:
        run = request_retrain(dataset, reason=reason, record=record, pipeline=pipeline, runs=runs, target=target,
                              models=models, parameters=parameters)
    except Exception as exc:
        record.finish("failed", f"pipeline submit failed: {exc}")
        return _problem(502, "Bad Gateway", f"the pipeline endpoint did not accept the run: {exc}")
    record.finish("submitted", f"dataset v{dataset.version} submitted ({reason})")
    return HttpAnswer(202, {"id": run.run_id, "run_id": run.run_id, "status": "Submitted",
                            "dataset_version": dataset.version, "reason": reason, "audit_id": record.id})
