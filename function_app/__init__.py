"""Trigger modules, one blueprint each. Thin: parse the trigger's input, call one service, return.

Below, what the API's HTTP triggers share: `to_response`, the one place a service's HttpAnswer (JSON, RFC 9457
problem documents, ready bytes; shared.services.http_guard) becomes the host's response, and the 405 answer.

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

from shared.services.http_guard import JSON, PROBLEM_JSON, HttpAnswer, problem

API_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
__all__ = ["API_METHODS", "JSON", "PROBLEM_JSON", "method_not_allowed", "to_response"]


def to_response(answer: HttpAnswer) -> func.HttpResponse:
    """The host's response for `answer`: a JSON body (values JSON cannot hold written as text) or its bytes, UTF-8."""
    body = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body, default=str)
    return func.HttpResponse(body, status_code=answer.status, headers=dict(answer.headers), charset="utf-8",
                             mimetype=answer.content_type)


def method_not_allowed(req: func.HttpRequest, *allowed: str) -> func.HttpResponse | None:
    """None when `req.method` is one of `allowed`; otherwise the 405 problem response with `Allow`."""
    method = (req.method or "").upper()
    if method in allowed:
        return None
    allow = ", ".join(allowed)
    path = urlsplit(req.url or "").path
    where = path if path and len(path) <= 100 else "this route"
    return to_response(problem(405, f"{method} is not allowed on {where}; use {allow}", {"Allow": allow}))
