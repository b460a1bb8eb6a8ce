"""HTTP triggers: GET /api/runs and GET /api/runs/{id} (function key)."""

import json

import azure.functions as func

from shared.bootstrap import services
from shared.services.run_queries import get_run, list_runs

bp = func.Blueprint()


def _json(status: int, body: dict) -> func.HttpResponse:
    mimetype = "application/json" if status < 400 else "application/problem+json"
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype=mimetype)


@bp.function_name("runs_get")
@bp.route(route="runs/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def runs_get(req: func.HttpRequest) -> func.HttpResponse:
    return _json(*get_run(req.route_params["id"], runs=services().runs))


@bp.function_name("runs_list")
@bp.route(route="runs", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def runs_list(req: func.HttpRequest) -> func.HttpResponse:
    try:
        limit = max(1, min(500, int(req.params.get("limit", "50"))))
    except ValueError:
        return _json(400, {"type": "about:blank", "title": "Bad Request", "status": 400,
                           "detail": "query parameter 'limit' must be an integer"})
    return _json(*list_runs(runs=services().runs, limit=limit, status=req.params.get("status")))
