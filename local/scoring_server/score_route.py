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
from local.scoring_server.formats import (
    NO_INPUT_DATA,
    NOT_JSON_TYPE,
    RUN_FAILED,
    ContainerStatus,
    RequestError,
    input_records,
    is_json_content_type,
    parse_body,
    predictions,
    run_failed,
)
from shared.scoring import contract
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
        """The managed endpoint's part (key, a deployment to send to, 424 around a non-200 answer of the
        deployment: shared/scoring/contract.py), then the deployment's (formats.py)."""
        if not bearer_matches(scope["headers"], self.key):
            return 401, _dump({"error": "missing or invalid key: send the header `Authorization: Bearer <key>`"}), \
                [(b"www-authenticate", b"Bearer")]
        generation = self.state.live  # one read: the whole request uses this model even if a switch happens
        if generation is None:
            return contract.NO_DEPLOYMENT_STATUS, _dump({"error": "no model deployed yet: the endpoint has no "
                                                                  "deployment with positive weight"}), []
        try:
            answer = await self._score(generation.model, scope, receive, slot=generation.slot)
        except RequestError as exc:
            self.state.record(generation, 500 if exc.fault else 400)
            log.info("POST /score -> %d (deployment answered %d: %s; model v%s, slot %s)",
                     contract.MODEL_ERROR_STATUS, exc.status, exc.detail, generation.model.version, generation.slot)
            return contract.MODEL_ERROR_STATUS, _dump({"message": str(exc)}), [
                *generation.headers, (contract.MODEL_ERROR_STATUS_HEADER.encode(), str(int(exc.status)).encode()),
                (contract.MODEL_ERROR_REASON_HEADER.encode(), contract.MODEL_ERROR_REASON.encode())]
        self.state.record(generation, 200)
        return 200, _dump(answer), generation.headers

    async def _score(self, model: ScoringModel, scope: Scope, receive: Receive, *, slot: str) -> list[int]:
        """The deployment's answer: the inference server's checks, then run() (formats.py says whose)."""
        if scope["method"] == "GET":  # the server reads a GET's query string as the body: it has no input_data
            raise RequestError(NO_INPUT_DATA)
        if scope["method"] != "POST":
            raise RequestError("The method is not allowed for the requested URL.", ContainerStatus.METHOD_NOT_ALLOWED)
        if not is_json_content_type(scope["headers"]):
            raise RequestError(NOT_JSON_TYPE, ContainerStatus.UNSUPPORTED_MEDIA_TYPE)
        try:
            records = input_records(parse_body(await _read_body(receive)))
            if len(records) <= INLINE_ROWS:
                answer = model.predict_records(records)
            else:
                answer = await run_in_threadpool(model.predict_records, records)
        except ScoringInputError as exc:
            raise run_failed(str(exc)) from None
        except (RequestError, ClientGone):
            raise
        except Exception as exc:
            log.exception("scoring with model v%s failed", model.version)
            raise RequestError(RUN_FAILED, ContainerStatus.RUN_FAILED, detail=type(exc).__name__, fault=True) \
                from None
        result = predictions(answer["result"])
        if self.collector is not None:  # Azure ML's data collector: model_inputs and model_outputs of `slot`
            self.collector.add(records, result, deployment=slot)  # an append; written to storage in batches
        return result


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
                raise RequestError(f"request body is over {MAX_BODY_BYTES // (1024 * 1024)} MB (local limit)")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)

