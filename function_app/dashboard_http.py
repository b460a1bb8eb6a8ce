"""HTTP triggers of the dashboard: GET /api/dashboard (the page), /api/dashboard/data (its JSON, polled),
/api/dashboard/assets/{name} (its script and style sheet: static, anonymous, no data) and /api/drift-reports/{id}
(a drift check's HTML report). Function key on all but the assets; other methods get 405."""

import azure.functions as func

from function_app import API_METHODS, method_not_allowed, to_response
from shared.api import dashboard_page
from shared.bootstrap import services
from shared.services.dashboard import DashboardSources, drift_report, snapshot
from shared.services.http_guard import HttpAnswer, problem

bp = func.Blueprint()


@bp.function_name("dashboard_page")
@bp.route(route="dashboard", methods=API_METHODS, auth_level=func.AuthLevel.FUNCTION)
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := method_not_allowed(req, "GET")) is not None:
        return refused
    return to_response(HttpAnswer(200, dashboard_page.page_bytes(), dict(dashboard_page.PAGE_HEADERS),
                                  mimetype="text/html"))


@bp.function_name("dashboard_data")
@bp.route(route="dashboard/data", methods=API_METHODS, auth_level=func.AuthLevel.FUNCTION)
def dashboard_data(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := method_not_allowed(req, "GET")) is not None:
        return refused
    s = services()
    data = snapshot(DashboardSources(audit=s.audit, runs=s.runs, models=s.models, outbox=s.outbox,
                                     reports=s.reports))  # finite numbers only: plain JSON
    return to_response(HttpAnswer(200, data, dict(dashboard_page.DATA_HEADERS)))


@bp.function_name("dashboard_asset")
@bp.route(route="dashboard/assets/{name}", methods=API_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
def dashboard_asset(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := method_not_allowed(req, "GET")) is not None:
        return refused
    found = dashboard_page.asset(req.route_params.get("name", ""))
    if found is None:
        return to_response(problem(404, f"the dashboard has no asset of that name (it has: "
                                        f"{', '.join(dashboard_page.ASSETS)})"))
    content, media = found
    return to_response(HttpAnswer(200, content, dict(dashboard_page.ASSET_HEADERS), mimetype=media))


@bp.function_name("drift_report")
@bp.route(route="drift-reports/{id}", methods=API_METHODS, auth_level=func.AuthLevel.FUNCTION)
def drift_report_get(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := method_not_allowed(req, "GET")) is not None:
        return refused
    s = services()
    return to_response(drift_report(req.route_params.get("id", ""), audit=s.audit, reports=s.reports,
                                    container=s.settings.reports_container))
