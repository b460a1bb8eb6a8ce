"""HTTP trigger: POST /api/retrain, for CI/CD and data platforms (function key + HMAC signature)."""

import azure.functions as func

from function_app import API_METHODS, to_response
from shared.bootstrap import services
from shared.services.http_guard import read_body
from shared.services.http_retrain import WebhookRequest
from shared.services.http_retrain import retrain_http as handle

bp = func.Blueprint()


@bp.function_name("retrain_http")
@bp.route(route="retrain", methods=API_METHODS, auth_level=func.AuthLevel.FUNCTION)
def retrain_http(req: func.HttpRequest) -> func.HttpResponse:
    s = services()  # the service answers a wrong method (405) itself, as a problem document like any refusal
    body = read_body(req.headers, req.get_body)  # a Content-Length over 1 MB is refused (413) without reading
    answer, _ = handle(WebhookRequest(body, dict(req.headers), req.method), s.webhook)
    return to_response(answer)
