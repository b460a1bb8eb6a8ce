"""The host's HTTP surface as one ASGI app: `/api/{route}` for HTTP triggers (keys by auth level), the Event Grid
webhook, the admin API (master key) and `GET /` for readiness probes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from azure.functions import meta
from azure.functions.http import HttpRequestConverter, HttpResponseConverter
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from local.functions_host import blob_webhook, eventgrid
from local.functions_host.blob_webhook import BlobEventTrigger
from local.functions_host.invoker import Invoker
from local.functions_host.keys import SYSTEM_KEY_BLOBS, SYSTEM_KEY_EVENTGRID, HostKeys
from local.functions_host.loader import IndexedFunction
from local.functions_host.routes import RouteTemplate
from shared.redaction import redact_query

log = logging.getLogger("functions_host")

# The real host's default cap on a request body (100 MB); app setting FUNCTIONS_REQUEST_BODY_SIZE_LIMIT overrides it,
# as in Azure (azure-functions-host src/WebJobs.Script.WebHost/Middleware/HttpRequestSizeMiddleware.cs). The local
# stack sets it to what its routes accept (shared.services.http_guard.HOST_BODY_LIMIT).
BODY_LIMIT = 104_857_600
HTTP_REASON = "This function was programmatically called via the host APIs."
_SKIP_RESPONSE_HEADERS = {"content-length", "transfer-encoding", "connection"}


@dataclass
class HttpFunction:
    fn: IndexedFunction
    route: RouteTemplate
    methods: frozenset[str] | None  # None: every method
    auth_level: str  # anonymous | function | admin

    def allows(self, method: str) -> bool:
        return self.methods is None or method in self.methods

    def url(self, base: str, prefix: str) -> str:
        path = "/".join(p for p in (prefix, self.route.template) if p)
        return f"{base}/{path}"


def http_function(fn: IndexedFunction, route: RouteTemplate) -> HttpFunction:
    trigger = fn.trigger or {}
    methods = trigger.get("methods")
    level = str(trigger.get("authLevel") or "function").lower()
    if level not in ("anonymous", "function", "admin"):
        level = "admin" if level == "system" else "function"
    return HttpFunction(fn, route, frozenset(str(m).upper() for m in methods) if methods else None, level)


def to_http_request(request: Request, body: bytes, route_params: dict[str, str]):
    """The `func.HttpRequest` the worker builds from the host's RPC HTTP message."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    # The App Service front end in front of the Azure host appends the caller's address to X-Forwarded-For (after
    # any value the caller sent, so only the last entry is trustworthy); do the same, so functions can tell clients
    # apart locally as in Azure. (In Azure the entry can carry a port, `ip:port`: a reader should drop it.)
    if request.client and request.client.host:
        forwarded = headers.get("x-forwarded-for", "").strip()
        headers["x-forwarded-for"] = f"{forwarded}, {request.client.host}" if forwarded else request.client.host
    query: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        query[name] = f"{query[name]},{value}" if name in query else value
    datum = meta.Datum({
        "method": meta.Datum(request.method, "string"),
        "url": meta.Datum(str(request.url), "string"),
        "headers": {k: meta.Datum(v, "string") for k, v in headers.items()},
        "query": {k: meta.Datum(v, "string") for k, v in query.items()},
        "params": {k: meta.Datum(v, "string") for k, v in route_params.items()},
        "body": meta.Datum(body, "bytes"),
    }, "http")
    return HttpRequestConverter.decode(datum, trigger_metadata={})


def to_response(value: Any) -> Response:
    """A function's return value as the host would send it back."""
    if value is None:
        return Response(status_code=204)
    if isinstance(value, bytes | bytearray):
        return Response(bytes(value), 200, media_type="application/octet-stream")
    datum = HttpResponseConverter.encode(value, expected_type=None)  # NotImplementedError for other types
    if datum.type == "string":
        return Response(datum.value.encode("utf-8"), 200, headers={"content-type": "text/plain; charset=utf-8"})
    parts = datum.value
    response = Response(parts["body"].value or b"", int(parts["status_code"].value))
    for name, header in parts["headers"].items():
        if name.lower() not in _SKIP_RESPONSE_HEADERS:
            response.raw_headers.append((name.lower().encode("latin-1"), str(header.value).encode("latin-1")))
    for cookie in parts.get("cookies") or []:
        for morsel in cookie.values():
            response.raw_headers.append((b"set-cookie", morsel.OutputString().encode("latin-1")))
    return response


class TooLarge(Exception):
    pass


async def read_body(request: Request, limit: int = BODY_LIMIT) -> bytes:
    """The body, refused (TooLarge -> 413, connection closed) before any of it is read when Content-Length is over
    `limit`, and as soon as the bytes streamed so far (e.g. chunked) pass it: never more than `limit` is buffered."""
    length = request.headers.get("content-length")
    if length and length.strip().isdigit() and int(length) > limit:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _key(request: Request) -> str | None:
    return request.headers.get("x-functions-key") or request.query_params.get("code")


def _unauthorized() -> Response:
    return Response(status_code=401)


class HostApp:
    def __init__(self, *, http_functions: list[HttpFunction], eventgrid_functions: dict[str, IndexedFunction],
                 keys: HostKeys, blob_events: dict[str, BlobEventTrigger] | None = None, invoker: Invoker,
                 route_prefix: str, status: Callable[[], dict],
                 fire: Callable[[str, Any], Awaitable[tuple[int, str]]], body_limit: int = BODY_LIMIT):
        self.http_functions = sorted(http_functions, key=lambda h: h.route.rank)
        self.eventgrid_functions = dict(eventgrid_functions)
        self.blob_events = blob_events if blob_events is not None else {}
        self.keys = keys
        self.invoker = invoker
        self.prefix = route_prefix.strip("/")
        self.status = status
        self.fire = fire
        self.body_limit = body_limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        started = time.perf_counter()
        try:
            response = await self._dispatch(request)
        except TooLarge:
            response = PlainTextResponse("Request body too large", 413, headers={"connection": "close"})
        except Exception:
            log.exception("unhandled error in the host serving %s %s", request.method, request.url.path)
            response = Response(status_code=500)
        await response(scope, receive, send)
        query = redact_query(scope.get("query_string", b"").decode("latin-1"))
        log.info("%s %s%s -> %d (%dms)", request.method, request.url.path, f"?{query}" if query else "",
                 response.status_code, (time.perf_counter() - started) * 1000)

    async def _dispatch(self, request: Request) -> Response:
        path = request.scope["path"]  # decoded as sent: `request.url` drops \t\r\n, so /runs/%0A would be /runs/
        if path == "/":
            if request.method in ("GET", "HEAD"):
                return PlainTextResponse("Your Functions host is up and running.")
            return Response(status_code=405, headers={"allow": "GET, HEAD"})
        lowered = path.lower().rstrip("/")
        if lowered == "/admin" or lowered.startswith("/admin/"):
            return await self._admin(request, lowered)
        if lowered == "/runtime/webhooks/eventgrid":
            return await self._eventgrid(request)
        if lowered == "/runtime/webhooks/blobs":
            return await self._blobs(request)
        return await self._http_trigger(request, path)

    async def _http_trigger(self, request: Request, path: str) -> Response:
        rel = path.lstrip("/")
        if self.prefix:
            head, _, rest = rel.partition("/")
            if head.lower() != self.prefix.lower():
                return Response(status_code=404)
            rel = rest
        matches = [(h, values) for h in self.http_functions if (values := h.route.match(rel)) is not None]
        if not matches:
            return Response(status_code=404)
        method = request.method.upper()
        chosen = next(((h, v) for h, v in matches if h.allows(method)), None)
        if chosen is None:
            allowed = sorted({m for h, _ in matches for m in (h.methods or ())})
            return Response(status_code=405, headers={"allow": ", ".join(allowed)})
        target, route_params = chosen
        key = _key(request)
        if target.auth_level == "function" and not self.keys.is_function_key(key):
            return _unauthorized()
        if target.auth_level == "admin" and not self.keys.is_master(key):
            return _unauthorized()
        body = await read_body(request, self.body_limit)
        result = await self.invoker.invoke(target.fn, to_http_request(request, body, route_params), reason=HTTP_REASON)
        if not result.ok:
            return Response(status_code=500)
        try:
            return to_response(result.value)
        except NotImplementedError:
            log.error("Function 'Functions.%s' returned a %s; return func.HttpResponse, str, bytes or None",
                      target.fn.name, type(result.value).__name__)
            return Response(status_code=500)

    async def _admin(self, request: Request, path: str) -> Response:
        if not self.keys.is_master(_key(request)):
            return _unauthorized()
        if path == "/admin/host/status":
            if request.method not in ("GET", "HEAD"):
                return Response(status_code=405, headers={"allow": "GET, HEAD"})
            return JSONResponse(self.status())
        if path.startswith("/admin/functions/") and path.count("/") == 3:
            if request.method != "POST":
                return Response(status_code=405, headers={"allow": "POST"})
            name = request.url.path.rstrip("/").rsplit("/", 1)[1]
            body = await read_body(request, self.body_limit)
            try:
                doc = json.loads(body) if body.strip() else {}
            except ValueError:
                return PlainTextResponse("the body must be JSON like {\"input\": \"\"}", 400)
            status, message = await self.fire(name, doc.get("input") if isinstance(doc, dict) else None)
            return Response(status_code=status) if not message else PlainTextResponse(message, status)
        return Response(status_code=404)

    async def _eventgrid(self, request: Request) -> Response:
        if not self.keys.is_system_key(SYSTEM_KEY_EVENTGRID, _key(request)):
            return _unauthorized()
        # The extension keeps its listeners in a plain Dictionary keyed by the function's name, so `functionName`
        # must match exactly, case included (EventGridExtensionConfigProvider.cs, `_listeners.TryGetValue`); the
        # host's own lookups (admin API, HTTP routes) stay case-insensitive as in Azure.
        name = request.query_params.get("functionName") or ""
        fn = self.eventgrid_functions.get(name)
        if fn is None:
            return PlainTextResponse(f"cannot find function: '{name}'", 404)
        if request.method == "OPTIONS":  # CloudEvents abuse-protection handshake
            origin = request.headers.get("webhook-request-origin", "*")
            return Response(status_code=200, headers={"webhook-allowed-origin": origin})
        if request.method != "POST":
            return Response(status_code=405, headers={"allow": "POST, OPTIONS"})
        body = await read_body(request, self.body_limit)
        answer = await eventgrid.handle(fn, request.headers.get("aeg-event-type"), body, self.invoker)
        if answer.body is None:
            return Response(status_code=answer.status)
        if isinstance(answer.body, str):
            return PlainTextResponse(answer.body, answer.status)
        return JSONResponse(answer.body, answer.status)

    async def _blobs(self, request: Request) -> Response:
        if not self.keys.is_system_key(SYSTEM_KEY_BLOBS, _key(request)):
            return _unauthorized()
        if request.method != "POST":
            return Response(status_code=405, headers={"allow": "POST"})
        body = await read_body(request, self.body_limit)
        answer = await blob_webhook.handle(self.blob_events, request.query_params.get("functionName") or "",
                                           request.headers.get("aeg-event-type"), body)
        if answer.body is None:
            return Response(status_code=answer.status)
        return JSONResponse(answer.body, answer.status)
