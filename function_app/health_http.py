"""HTTP trigger: GET /api/health (anonymous). 200 when storage and the pipeline endpoint answer, else 503.

Independent of services(): its probes are built from the settings alone, so storage being down at cold start (when
services() cannot be built) is a 503 with reasons, not a 500.
"""

import logging
from functools import lru_cache

import azure.functions as func

from function_app import API_METHODS, method_not_allowed, to_response
from shared import bootstrap
from shared import settings as app_settings
from shared.services import health as checks

bp = func.Blueprint()
log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def checker() -> checks.HealthChecker:
    """Built once per worker (like services()); not cached when building fails, so the next call tries again."""
    return bootstrap.health_checker(app_settings.get_settings())


@bp.function_name("health")
@bp.route(route="health", methods=API_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := method_not_allowed(req, "GET")) is not None:
        return refused
    try:
        result = checker()()
    except Exception as exc:  # settings missing, no credential: the checks cannot even be set up
        log.warning("health: the checks could not be set up (%s)", type(exc).__name__)
        result = checks.unavailable()
    return to_response(checks.http_answer(result))
