"""Trigger modules, one blueprint each. Thin: parse the trigger's input, call one service, return.

Below, what the API's HTTP triggers share: JSON and RFC 9457 problem responses, and the 405 answer.

Why API routes are registered with every common method: for a method missing from a route's `methods`, the Azure
Functions host answers `404` with an empty body (azure-functions-host#10098) and our local host a bare `405`.
Registered with API_METHODS, the request reaches the function, which answers the methods it does not serve with
`405`, an `Allow` header and a problem document, the same in Azure and locally:

    @bp.route(route="runs", methods=API_METHODS, auth_level=func.AuthLevel.FUNCTION)
    def runs_list(req: func.HttpRequest) -> func.HttpResponse:
        if (refused := method_not_allowed(req, "GET")) is not None:
            return refused
        ...
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import azure.functions as func

API_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"


def json_response(status: int, body: dict, *, headers: dict | None = None,
                  mimetype: str | None = None) -> func.HttpResponse:
    """`body` as JSON; `application/problem+json` for an error status unless `mimetype` says otherwise."""
    return func.HttpResponse(json.dumps(body), status_code=status, headers=headers or {}, charset="utf-8",
                             mimetype=mimetype or (JSON if status < 400 else PROBLEM_JSON))


def problem_response(status: int, title: str, detail: str, *, headers: dict | None = None,
                     **extra) -> func.HttpResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return json_response(status, body, headers=headers, mimetype=PROBLEM_JSON)


def method_not_allowed(req: func.HttpRequest, *allowed: str) -> func.HttpResponse | None:
    """None when `req.method` is one of `allowed`; otherwise the 405 problem response with `Allow`."""
    method = (req.method or "").upper()
    if method in allowed:
        return None
    allow = ", ".join(allowed)
    path = urlsplit(req.url or "").path
    where = path if path and len(path) <= 100 else "this route"
    return problem_response(405, "Method Not Allowed", f"{method} is not allowed on {where}; use {allow}",
                            headers={"Allow": allow})
