"""POST /score as a plain ASGI handler: the hot path of the local scoring endpoint.

It skips FastAPI's routing, request object and response class (they cost a large share of a one-record
request); uvicorn's access log is off by default for the same reason, so an answer other than 200 is logged here.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from local.scoring_server.auth import bearer_matches
from local.scoring_server.bluegreen import BlueGreen
from local.scoring_server.formats import RequestError, parse_json, parse_scoring_request, render
from shared.scoring.runtime import ScoringInputError, ScoringModel

if TYPE_CHECKING:
    from shared.adapters.inference_data import InferenceCollector

log = logging.getLogger("scoring")

MAX_BODY_BYTES = 64 * 1024 * 1024
INLINE_ROWS = 64  # batches up to this size are scored on the event loop (well under a millisecond)


class ClientGone(Exception):
    """The caller hung up before its body arrived: there is nobody to answer."""


class ScoreRoute:
    """POST /score as a plain ASGI middleware in front of FastAPI: the hot path skips routing, the request
    object and the response class; everything else goes on to the app."""

    def __init__(self, app: ASGIApp, *, key: bytes, state: BlueGreen, collector: InferenceCollector | None = None):
        self.app, self.key, self.state, self.collector = app, key, state, collector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/score":
            await self.app(scope, receive, send)
            return
        try:
            status, body, headers = await self._handle(scope, receive)
        except ClientGone:
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   *headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if scope["method"] != "POST":
            return 405, _dump({"error": "use POST /score"}), [(b"allow", b"POST")]
        if not bearer_matches(scope["headers"], self.key):
            return 401, _dump({"error": "missing or invalid key: send the header `Authorization: Bearer <key>`"}), \
                [(b"www-authenticate", b"Bearer")]
        generation = self.state.live  # one read: the whole request uses this model even if a switch happens
        if generation is None:
            return 503, _dump({"error": "no model deployed yet"}), []
        status, answer = await self._score(generation.model, receive, slot=generation.slot)
        self.state.record(generation, status)
        if status != 200:  # uvicorn's access log is off by default (it costs a fifth of a request): say it here
            log.info("POST /score -> %d (model v%s, slot %s)", status, generation.model.version, generation.slot)
        return status, _dump(answer), generation.headers

    async def _score(self, model: ScoringModel, receive: Receive, *, slot: str) -> tuple[int, dict[str, Any]]:
        try:
            request = parse_scoring_request(parse_json(await _read_body(receive)))
            if len(request.records) <= INLINE_ROWS:
                answer = model.predict_records(request.records)
            else:
                answer = await run_in_threadpool(model.predict_records, request.records)
        except (RequestError, ScoringInputError) as exc:
            return getattr(exc, "status", 400), {"error": str(exc)}
        except ClientGone:
            raise
        except Exception as exc:
            log.exception("scoring with model v%s failed", model.version)
            return 500, {"error": f"scoring failed: {type(exc).__name__}"}
        if self.collector is not None:
            self.collector.add(request.records, answer["result"], deployment=slot)  # written in batches
        return 200, render(request, answer, model.version)


def _dump(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def _read_body(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise RequestError(f"request body is over {MAX_BODY_BYTES // (1024 * 1024)} MB", status=413)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)

