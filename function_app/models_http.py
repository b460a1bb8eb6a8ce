"""HTTP trigger: GET /api/models, the registered model versions and which one is live (function key)."""

import azure.functions as func

from function_app import API_METHODS, method_not_allowed, to_response
from shared.bootstrap import services
from shared.services.run_queries import list_models

bp = func.Blueprint()


@bp.function_name("models_list")
@bp.route(route="models", methods=API_METHODS, auth_level=func.AuthLevel.FUNCTION)
def models_list(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := method_not_allowed(req, "GET")) is not None:
        return refused
    return to_response(list_models(models=services().models))
