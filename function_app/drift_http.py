"""HTTP trigger: POST /api/drift-check runs the drift check now (function key + HMAC signature, like
/api/retrain; its own rate limit; one check at a time across instances), answering with its verdict."""

import azure.functions as func

from function_app import API_METHODS, to_response
from shared.bootstrap import services
from shared.services.check_drift import check_drift
from shared.services.drift_on_demand import drift_check_http
from shared.services.http_guard import WebhookRequest, read_body

bp = func.Blueprint()


@bp.function_name("drift_http")
@bp.route(route="drift-check", methods=API_METHODS, auth_level=func.AuthLevel.FUNCTION)
def drift_http(req: func.HttpRequest) -> func.HttpResponse:
    s = services()  # the service answers a wrong method (405) itself, as a problem document like any refusal

    def run_check(record_id: str):
        return check_drift(s.drift, past_due=False, trigger="http", function="drift_http", record_id=record_id)

    body = read_body(req.headers, req.get_body)  # a Content-Length over 1 MB is refused (413) without reading
    answer, _ = drift_check_http(WebhookRequest(body, dict(req.headers), req.method), s.drift_on_demand, run_check)
    return to_response(answer)
