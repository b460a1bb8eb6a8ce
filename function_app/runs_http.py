"""HTTP triggers: GET /api/runs and GET /api/runs/{id} (function key); other methods get 405."""

import azure.functions as func

from function_app import API_METHODS, method_not_allowed, to_response
from shared.bootstrap import services
from shared.services.run_queries import get_run, list_runs, parse_limit

bp = func.Blueprint()


@bp.function_name("runs_get")
@bp.route(route="runs/{id}", methods=API_METHODS, auth_level=func.AuthLevel.FUNCTION)
def runs_get(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := method_not_allowed(req, "GET")) is not None:
        return refused
    s = services()
    return to_response(get_run(req.route_params["id"], runs=s.runs, outbox=s.outbox,
                               experiment=s.retrain.target.experiment, audit=s.audit))


@bp.function_name("runs_list")
@bp.route(route="runs", methods=API_METHODS, auth_level=func.AuthLevel.FUNCTION)
def runs_list(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := method_not_allowed(req, "GET")) is not None:
        return refused
    limit = parse_limit(req.params.get("limit"))
    if not isinstance(limit, int):  # 400: not an integer from 1 to 500
        return to_response(limit)
    return to_response(list_runs(runs=services().runs, limit=limit, status=req.params.get("status")))
