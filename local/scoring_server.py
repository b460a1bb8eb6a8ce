"""The local scoring endpoint: the Azure ML scoring contract of the deployed AutoML bank-marketing model.

    POST /score          Authorization: Bearer <SCORING_KEY>, {"data": [{column: value, ...}, ...]}
                         -> {"result": ["yes"|"no", ...], "probabilities": [P(yes), ...], "model_version": "N"}
    GET  /swagger.json   the OpenAPI (Swagger 2.0) document of /score, like Azure ML generates (no auth)
    GET  / , /health     {"status": "ok", "model_version": "N" | null}
    POST /admin/deploy   Authorization: Bearer <SCORING_ADMIN_KEY>,
                         {"model_dir": "/abs/path/model", "version": "3", "smoke_records": [...]?}

A deploy loads the new model off the event loop, scores the smoke records (or the model's saved input
example) with it, and only then switches traffic by replacing one reference under a lock; a request reads
that reference once, so requests in flight during a swap finish on the model they started with. A model that
fails to load or to score answers 422 and the previous model keeps serving. Keys are compared in constant
time and never logged or echoed.

    SCORING_KEY=... SCORING_ADMIN_KEY=... python -m local.scoring_server --port 5001 [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from shared.domain import schema
from shared.scoring.runtime import ModelLoadError, ScoringInputError, ScoringModel

log = logging.getLogger("scoring")

MAX_RECORDS = 10_000
INLINE_ROWS = 64  # batches up to this size are scored on the event loop (well under a millisecond)
EXAMPLE_RECORD: dict[str, Any] = {
    "age": 41, "job": "blue-collar", "marital": "married", "education": "basic.9y", "default": "no",
    "housing": "yes", "loan": "no", "contact": "cellular", "month": "may", "day_of_week": "thu",
    "duration": 312, "campaign": 2, "pdays": 999, "previous": 0, "poutcome": "nonexistent",
    "emp.var.rate": -1.8, "cons.price.idx": 92.893, "cons.conf.idx": -46.2, "euribor3m": 1.299,
    "nr.employed": 5099.1,
}


class ModelSlot:
    """The live model. Readers take `current` once (an atomic reference read); `swap` replaces it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model: ScoringModel | None = None

    @property
    def current(self) -> ScoringModel | None:
        return self._model

    def swap(self, model: ScoringModel) -> ScoringModel | None:
        with self._lock:
            previous, self._model = self._model, model
        return previous


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _bearer_matches(request: Request, key: bytes) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode("utf-8"), key)


async def _json_body(request: Request) -> tuple[Any, JSONResponse | None]:
    raw = await request.body()
    if not raw.strip():
        return None, _error(400, "request body is empty; expected a JSON object")
    try:
        return json.loads(raw), None
    except UnicodeDecodeError:
        return None, _error(400, "request body is not valid JSON: not UTF-8 text")
    except json.JSONDecodeError as exc:
        return None, _error(400, f"request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                                 f"column {exc.colno} (char {exc.pos})")


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _model_path(value: Any) -> Path | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.startswith("file:"):
        text = unquote(urlsplit(text).path)
    path = Path(text)
    return path if path.is_absolute() else None


def create_app(scoring_key: str, admin_key: str, initial_model: Path | None = None, *,
               initial_version: str = "1") -> FastAPI:
    if not scoring_key or not admin_key:
        raise ValueError("both a scoring key and an admin key are required")
    score_key, deploy_key = scoring_key.encode("utf-8"), admin_key.encode("utf-8")
    slot = ModelSlot()
    if initial_model is not None:
        model = ScoringModel.load(initial_model, initial_version)
        model.smoke()
        slot.swap(model)
        log.info("serving model v%s from %s", model.version, initial_model)
    deploy_lock = asyncio.Lock()

    app = FastAPI(title="bankmarketing scoring (local)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.slot = slot

    def health() -> dict[str, Any]:
        live = slot.current
        return {"status": "ok", "model_version": live.version if live else None}

    app.get("/")(health)
    app.get("/health")(health)

    @app.get("/swagger.json")
    def swagger() -> dict[str, Any]:
        return swagger_document(slot.current)

    @app.post("/score")
    async def score(request: Request):
        if not _bearer_matches(request, score_key):
            return _error(401, "missing or invalid key: send the header `Authorization: Bearer <key>`")
        model = slot.current  # one read: the whole request uses this model even if a deploy swaps meanwhile
        if model is None:
            return _error(503, "no model deployed yet")
        payload, problem = await _json_body(request)
        if problem is not None:
            return problem
        if not isinstance(payload, dict):
            return _error(400, f"request body must be a JSON object with a `data` list, got {_type_name(payload)}")
        if "data" not in payload:
            return _error(400, "request body has no `data` field; expected {\"data\": [{column: value, ...}]}")
        records = payload["data"]
        if not isinstance(records, list):
            return _error(400, f"`data` must be a list of records, got {_type_name(records)}")
        if len(records) > MAX_RECORDS:
            return _error(400, f"`data` has {len(records)} records; at most {MAX_RECORDS} per request")
        try:
            if len(records) <= INLINE_ROWS:
                answer = model.predict_records(records)
            else:
                answer = await run_in_threadpool(model.predict_records, records)
        except ScoringInputError as exc:
            return _error(400, str(exc))
        except Exception as exc:
            log.exception("scoring with model v%s failed", model.version)
            return _error(500, f"scoring failed: {type(exc).__name__}")
        return {**answer, "model_version": model.version}

    @app.post("/admin/deploy")
    async def deploy(request: Request):
        if not _bearer_matches(request, deploy_key):
            return _error(401, "missing or invalid admin key: send the header `Authorization: Bearer <key>`")
        body, problem = await _json_body(request)
        if problem is not None:
            return problem
        if not isinstance(body, dict):
            return _error(400, f"request body must be a JSON object, got {_type_name(body)}")
        model_dir = _model_path(body.get("model_dir"))
        if model_dir is None:
            return _error(400, "`model_dir` must be an absolute path (or file: URI) of an MLflow model directory")
        version = body.get("version")
        if isinstance(version, bool) or not isinstance(version, str | int) or not str(version).strip():
            return _error(400, "`version` must be a non-empty string or integer")
        version = str(version).strip()
        smoke_records = body.get("smoke_records")
        if smoke_records is not None and not isinstance(smoke_records, list):
            return _error(400, f"`smoke_records` must be a list of records, got {_type_name(smoke_records)}")

        async with deploy_lock:  # deploys run one at a time; scoring never waits for this lock
            started = time.perf_counter()
            try:
                candidate = await run_in_threadpool(ScoringModel.load, model_dir, version)
                smoke = await run_in_threadpool(candidate.smoke, smoke_records or None)
            except (ModelLoadError, ScoringInputError) as exc:
                return _refused(slot, version, str(exc))
            except Exception as exc:  # anything else from a broken artifact is still the model's fault
                log.exception("deploy of model v%s failed", version)
                return _refused(slot, version, f"{type(exc).__name__}: {exc}")
            previous = slot.swap(candidate)
        seconds = round(time.perf_counter() - started, 3)
        log.info("deployed model v%s from %s in %.2fs (previous: %s, direct path: %s)", version, model_dir,
                 seconds, previous.version if previous else None, candidate.direct_path)
        return {"deployed": version, "previous": previous.version if previous else None, "smoke": smoke,
                "seconds": seconds}

    return app


def _refused(slot: ModelSlot, version: str, reason: str) -> JSONResponse:
    live = slot.current
    log.warning("model v%s not deployed: %s", version, reason)
    return _error(422, f"model v{version} not deployed: {reason}", serving=live.version if live else None)


# ------------------------------------------------------------------------------------------------ swagger


def _property(column: str, kind: str) -> dict[str, Any]:
    if kind == "int":
        return {"type": "integer", "format": "int64"}
    if kind == "float":
        return {"type": "number", "format": "double"}
    spec: dict[str, Any] = {"type": "string"}
    if column in schema.LEVELS:
        spec["description"] = "known values: " + ", ".join(schema.LEVELS[column]) + " (others are scored as unseen)"
    return spec


def swagger_document(model: ScoringModel | None) -> dict[str, Any]:
    """Swagger 2.0 for /score in the shape Azure ML generates for a deployed model's scoring script."""
    kinds = model.kinds if model is not None else {c: schema.COLUMNS[c] for c in schema.FEATURES}
    example = dict(model.input_example[0]) if model is not None and model.input_example else dict(EXAMPLE_RECORD)
    example = {c: example.get(c, EXAMPLE_RECORD.get(c)) for c in kinds}
    record_schema = {"type": "object", "required": list(kinds),
                     "properties": {c: _property(c, k) for c, k in kinds.items()}}
    return {
        "swagger": "2.0",
        "info": {
            "title": "bankmarketing",
            "description": "API specification for the Azure Machine Learning service bankmarketing "
                           "(local scoring endpoint)",
            "version": "1.0",
        },
        "schemes": ["http"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            "Bearer": {"type": "apiKey", "name": "Authorization", "in": "header",
                       "description": "For example: Bearer abc123"},
        },
        "paths": {
            "/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": "Health check: whether the service is up and which model version serves.",
                    "responses": {"200": {"description": "The service is up.",
                                          "schema": {"$ref": "#/definitions/Health"}}},
                },
            },
            "/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": "Run the deployed model on the records and return a prediction for each.",
                    "security": [{"Bearer": []}],
                    "parameters": [{
                        "name": "serviceInputPayload", "in": "body", "required": True,
                        "description": "The input payload for the real-time machine learning service.",
                        "schema": {"$ref": "#/definitions/ServiceInput"},
                    }],
                    "responses": {
                        "200": {"description": "A prediction per input record, in order.",
                                "schema": {"$ref": "#/definitions/ServiceOutput"}},
                        "400": {"description": "The body is not JSON, has no `data` list, or a record is invalid.",
                                "schema": {"$ref": "#/definitions/ErrorResponse"}},
                        "401": {"description": "Missing or invalid key.",
                                "schema": {"$ref": "#/definitions/ErrorResponse"}},
                        "503": {"description": "No model is deployed yet.",
                                "schema": {"$ref": "#/definitions/ErrorResponse"}},
                        "default": {"description": "The service failed to execute due to an error.",
                                    "schema": {"$ref": "#/definitions/ErrorResponse"}},
                    },
                },
            },
        },
        "definitions": {
            "ServiceInput": {
                "type": "object",
                "required": ["data"],
                "properties": {"data": {"type": "array", "items": record_schema}},
                "example": {"data": [example]},
            },
            "ServiceOutput": {
                "type": "object",
                "properties": {
                    "result": {"type": "array", "items": {"type": "string", "enum": ["yes", "no"]}},
                    "probabilities": {"type": "array", "items": {"type": "number", "format": "double"},
                                      "description": "probability of `yes` per record"},
                    "model_version": {"type": "string"},
                },
                "example": {"result": ["no"], "probabilities": [0.0731],
                            "model_version": model.version if model is not None else "1"},
            },
            "Health": {
                "type": "object",
                "properties": {"status": {"type": "string"}, "model_version": {"type": "string", "x-nullable": True}},
            },
            "ErrorResponse": {"type": "object", "properties": {"error": {"type": "string"}}},
        },
    }


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.scoring_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir", type=Path, help="a model to serve from the start (else 503 until deploy)")
    parser.add_argument("--model-version", default="1", help="version label of --model-dir (default 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scoring_key, admin_key = os.environ.get("SCORING_KEY", ""), os.environ.get("SCORING_ADMIN_KEY", "")
    if not scoring_key or not admin_key:
        print("error: set SCORING_KEY and SCORING_ADMIN_KEY in the environment", file=sys.stderr)
        return 2
    try:
        app = create_app(scoring_key, admin_key, args.model_dir, initial_version=args.model_version)
    except (ModelLoadError, ScoringInputError) as exc:
        print(f"error: cannot serve {args.model_dir}: {exc}", file=sys.stderr)
        return 1

    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info", access_log=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
