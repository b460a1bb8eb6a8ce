"""HTTP triggers: GET /api/openapi.json (the API's OpenAPI document) and GET /api/docs (Swagger UI); anonymous.
Other methods get 405."""

import azure.functions as func

from function_app import API_METHODS, JSON, method_not_allowed, to_response
from shared.api import openapi, swagger_ui
from shared.services.http_guard import HttpAnswer

bp = func.Blueprint()


@bp.function_name("openapi_json")
@bp.route(route="openapi.json", methods=API_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
def openapi_json(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := method_not_allowed(req, "GET")) is not None:
        return refused
    headers = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}
    return to_response(HttpAnswer(200, openapi.document_bytes(), headers, mimetype=JSON))


@bp.function_name("api_docs")
@bp.route(route="docs", methods=API_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
def api_docs(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := method_not_allowed(req, "GET")) is not None:
        return refused
    return to_response(HttpAnswer(200, swagger_ui.page_bytes(), swagger_ui.page_headers(), mimetype="text/html"))
