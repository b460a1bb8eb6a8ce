"""HTTP trigger: POST /api/retrain, for CI/CD and data platforms (function key + HMAC signature).

Every method is routed here so a wrong one gets a 405 problem document with `Allow`, not the host's bare 404."""

import json

import azure.functions as func

from shared.bootstrap import services
from shared.services.http_retrain import WebhookRequest
from shared.services.http_retrain import retrain_http as handle

bp = func.Blueprint()


@bp.function_name("retrain_http")
@bp.route(route="retrain", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], auth_level=func.AuthLevel.FUNCTION)
def retrain_http(req: func.HttpRequest) -> func.HttpResponse:
    s = services()
    answer, _ = handle(WebhookRequest(req.get_body(), dict(req.headers), req.method), guard=s.webhook,
                       target=s.target, datasets=s.datasets, pipeline=s.pipeline, runs=s.runs, audit=s.audit,
                       models=s.models)
    mimetype = "application/json" if answer.status < 400 else "application/problem+json"
    return func.HttpResponse(json.dumps(answer.body, default=str), status_code=answer.status,
                             headers=answer.headers, mimetype=mimetype)
