"""HTTP triggers: GET /api/openapi.json (the API's OpenAPI document) and GET /api/docs (Swagger UI); anonymous.
Other methods get 405."""

import azure.functions as func

from function_app import API_METHODS, method_not_allowed
from shared.api import openapi, swagger_ui

bp = func.Blueprint()


@bp.function_name("openapi_json")
@bp.route(route="openapi.json", methods=API_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
def openapi_json(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := method_not_allowed(req, "GET")) is not None:
        return refused
    return func.HttpResponse(openapi.document_bytes(), status_code=200, mimetype="application/json",
                             charset="utf-8", headers={"Cache-Control": "public, max-age=300",
                                                       "X-Content-Type-Options": "nosniff"})


@bp.function_name("api_docs")
@bp.route(route="docs", methods=API_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
def api_docs(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := method_not_allowed(req, "GET")) is not None:
        return refused
    return func.HttpResponse(swagger_ui.page_bytes(), status_code=200, mimetype="text/html", charset="utf-8",
                             headers=swagger_ui.page_headers())
