"""HTTP trigger: POST /api/retrain, for CI/CD and data platforms (function key required)."""

import json

import azure.functions as func

from shared.bootstrap import services
from shared.services.http_retrain import retrain_http as handle

bp = func.Blueprint()


@bp.function_name("retrain_http")
@bp.route(route="retrain", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def retrain_http(req: func.HttpRequest) -> func.HttpResponse:
    s = services()
    answer, _ = handle(req.get_body(), target=s.target, datasets=s.datasets, pipeline=s.pipeline, runs=s.runs,
                       audit=s.audit, models=s.models)
    headers = {}
    mimetype = "application/json"
    if answer.status == 202:
        headers["Location"] = f"/api/runs/{answer.body['run_id']}"
    else:
        mimetype = "application/problem+json"
    return func.HttpResponse(json.dumps(answer.body), status_code=answer.status, headers=headers,
                             mimetype=mimetype)
