"""HTTP trigger: POST /api/drift-check runs the drift check now (function key), answering with its verdict."""

import json

import azure.functions as func

from function_app import API_METHODS, method_not_allowed
from shared.bootstrap import services
from shared.services.check_drift import check_drift

bp = func.Blueprint()


@bp.function_name("drift_http")
@bp.route(route="drift-check", methods=API_METHODS, auth_level=func.AuthLevel.FUNCTION)
def drift_http(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := method_not_allowed(req, "POST")) is not None:
        return refused
    s = services()
    record = check_drift(past_due=False, policy=s.drift, target=s.target, datasets=s.datasets, models=s.models,
                         runs=s.runs, pipeline=s.pipeline, audit=s.audit, inference=s.inference, reports=s.reports,
                         offload=s.drift_jobs, outbox=s.outbox, dispatch=s.dispatch, trigger="http",
                         function="drift_http")
    body = {"audit_id": record.id, "outcome": record.outcome, "detail": record.detail, "run_id": record.run_id,
            "drift": record.data.get("drift"), "report": record.data.get("report"),
            "job": record.data.get("offload", {}).get("job")}
    status = 202 if record.outcome == "profiling" else 200  # a large window: the verdict follows its job
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json")
