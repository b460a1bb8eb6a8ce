"""The local scoring endpoint: the Azure ML scoring contract of the deployed bank-marketing model, blue/green.

    POST /score            Authorization: Bearer <SCORING_KEY>; one of three request formats:
        {"data": [{column: value, ...}, ...]}
            -> {"result": ["yes"|"no", ...], "probabilities": [P(yes), ...], "model_version": "N"}
        {"Inputs": {"data": [records]}, "GlobalParameters": {"method": "predict" | "predict_proba"}}
            -> {"Results": ["yes"|"no", ...]} or {"Results": [[P(no), P(yes)], ...]}   (AutoML v2 scoring script)
        {"input_data": {"columns": [...], "index": [...]?, "data": [[...], ...]}}
            -> {"predictions": ["yes"|"no", ...]}          (Azure ML MLflow no-code deployment / mlflow serve)
        every answer carries the headers `azureml-model-deployment: blue|green` and `x-model-version: N`
    GET  /swagger.json     the OpenAPI (Swagger 2.0) document of /score, like Azure ML generates (no auth)
    GET  / , /health       {"status": "ok", "model_version": "N" | null}
    POST /admin/deploy     Authorization: Bearer <SCORING_ADMIN_KEY>,
                           {"model_dir": "/abs/path/model", "version": "3", "digest": "sha256:...",
                            "smoke_records": [...]?}
                           the folder must lie under --models-root (links resolved) and its content must match
                           `digest` (the registry's hash) before anything is unpickled: 400 without a digest,
                           403 outside the root or when the content differs
    POST /admin/rollback   (admin key) traffic back to the other slot's model, instantly; the optional body
                           {"from_version": "N"} makes it conditional on model vN being live (else 409)
    GET  /admin/status     (admin key) slots, live slot, its counters since the switch, recent switch events

Two slots, "blue" and "green". A deploy loads the new model off the event loop, smoke-tests it with the given
records (or the model's saved input example), puts it into the idle slot and switches traffic by replacing
one reference; the previous model stays loaded in the other slot, so a rollback is one more reference swap.
A request reads that reference once, so requests in flight during a switch finish on the model they started
with. A model that fails to load or to score answers 422 and traffic stays where it was. Deploys run one at
a time; scoring and rollbacks never wait for them.

Automatic rollback: the first `rollback_window` requests after a deploy are watched; when server-side
failures (5xx, not 400s) reach `rollback_min_failures` and exceed `rollback_error_rate` of the requests seen
so far, traffic goes back to the previous slot and an `auto_rollback` event is recorded.

POST /score is a plain ASGI handler in front of FastAPI (no routing, request object or response class on the
hot path), and uvicorn's access log is off unless --access-log (it cost a fifth of a one-record request); a
/score answer other than 200 is logged by the handler. Keys are compared in constant time and never logged
or echoed.

    SCORING_KEY=... SCORING_ADMIN_KEY=... python -m local.scoring_server --port 5001 --models-root RUNS_DIR
        [--model-dir DIR --model-digest sha256:...]
        [--rollback-window 50] [--rollback-error-rate 0.1] [--rollback-min-failures 3] [--access-log]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from shared import redaction
from shared.domain import schema
from shared.scoring.runtime import ModelLoadError, ScoringInputError, ScoringModel
from shared.scoring.trusted_model import UntrustedModel, check_model_folder

log = logging.getLogger("scoring")

SLOTS = ("blue", "green")
MAX_RECORDS = 10_000
MAX_BODY_BYTES = 64 * 1024 * 1024
INLINE_ROWS = 64  # batches up to this size are scored on the event loop (well under a millisecond)
ROLLBACK_WINDOW = 50
ROLLBACK_ERROR_RATE = 0.10
ROLLBACK_MIN_FAILURES = 3
EVENTS_KEPT = 50
FORMATS_HINT = ('{"data": [{column: value, ...}]}, {"Inputs": {"data": [...]}, "GlobalParameters": {...}} '
                'or {"input_data": {"columns": [...], "data": [[...]]}}')
AUTOML_METHODS = ("predict", "predict_proba")
EXAMPLE_RECORD: dict[str, Any] = dict(schema.EXAMPLE_RECORD)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


# -------------------------------------------------------------------------------------------- blue/green


class NothingToRollBack(RuntimeError):
    """The other slot is empty, nothing is live, or not the version the caller meant; safe to return (409)."""


@dataclass(frozen=True)
class Loaded:
    """A model sitting in a slot, live or not."""

    model: ScoringModel
    loaded_at: str


@dataclass(eq=False)
class Generation:
    """One stretch of traffic on one slot, from a switch to the next. A request counts against the generation
    it started on, so a late answer from the old model never counts against the new one."""

    slot: str
    model: ScoringModel
    since: str
    watch: int  # auto-rollback watches while requests <= watch (0: not watched)
    requests: int = 0
    errors: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.headers = [(b"azureml-model-deployment", self.slot.encode()),
                        (b"x-model-version", self.model.version.encode("ascii", "replace"))]


class BlueGreen:
    """The two slots and which one is live. Every switch happens under `_lock` and replaces `live` in one
    assignment; scoring reads `live` once per request and never takes the lock."""

    def __init__(self, *, window: int = ROLLBACK_WINDOW, error_rate: float = ROLLBACK_ERROR_RATE,
                 min_failures: int = ROLLBACK_MIN_FAILURES):
        if window < 0 or not 0.0 <= error_rate < 1.0 or min_failures < 1:
            raise ValueError("rollback window must be >= 0, error rate in [0, 1) and min failures >= 1")
        self.window, self.error_rate, self.min_failures = window, error_rate, min_failures
        self.slots: dict[str, Loaded | None] = dict.fromkeys(SLOTS)
        self.live: Generation | None = None
        self.deploying: str | None = None  # version being loaded / smoke-tested
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self._lock = threading.Lock()

    @staticmethod
    def other(slot: str | None) -> str:
        return "green" if slot == "blue" else "blue"

    def deploy(self, model: ScoringModel, reason: str | None = None) -> tuple[Generation, Generation | None]:
        """Put `model` into the slot that is idle now and send traffic to it; watched when there is a way back."""
        with self._lock:
            previous = self.live
            slot = self.other(previous.slot if previous else None)
            self.slots[slot] = Loaded(model, _now())
            self.live = Generation(slot, model, _now(), watch=self.window if previous else 0)
            self._event("deploy", previous, reason)
            return self.live, previous

    def rollback(self, kind: str = "rollback", reason: str | None = None, *, only_from: Generation | None = None,
                 from_version: str | None = None) -> tuple[Generation, Generation] | None:
        """Traffic to the other slot's model. With `only_from`, only if that generation is still live (an
        auto-rollback must not undo a switch that happened meanwhile); then None means nothing was done.
        With `from_version`, only if that version is live (a caller's rollback after an auto-rollback would
        otherwise bring the bad model back)."""
        with self._lock:
            current = self.live
            if only_from is not None and current is not only_from:
                return None
            if current is None:
                raise NothingToRollBack("nothing to roll back: no model has been deployed yet")
            if from_version is not None and current.model.version != from_version:
                raise NothingToRollBack(f"nothing rolled back: model v{from_version} is not live (v"
                                        f"{current.model.version} is, on slot {current.slot})")
            target = self.other(current.slot)
            loaded = self.slots[target]
            if loaded is None:
                raise NothingToRollBack(f"nothing to roll back to: slot {target} is empty (only model "
                                        f"v{current.model.version} has been deployed)")
            self.live = Generation(target, loaded.model, _now(), watch=0)
            self._event(kind, current, reason)
            return self.live, current

    def record(self, generation: Generation, status: int) -> None:
        """Count a finished request; a server-error spike in a watched generation rolls it back."""
        generation.requests += 1
        if status < 500:
            return
        generation.errors += 1
        if generation.requests <= generation.watch and generation.errors >= self.min_failures \
                and generation.errors > self.error_rate * generation.requests:
            self._auto_rollback(generation)

    def _auto_rollback(self, generation: Generation) -> None:
        reason = (f"{generation.errors} of the first {generation.requests} requests on model "
                  f"v{generation.model.version} failed with a server error (limit {self.error_rate:.0%} "
                  f"and {self.min_failures} failures within {self.window} requests)")
        try:
            switched = self.rollback("auto_rollback", reason, only_from=generation)
        except NothingToRollBack:
            switched = None
        if switched is not None:
            live, _ = switched
            log.error("auto-rollback to model v%s (slot %s): %s", live.model.version, live.slot, reason)

    def _event(self, kind: str, previous: Generation | None, reason: str | None) -> None:
        live = self.live
        assert live is not None
        self.events.append({"event": kind, "at": live.since, "slot": live.slot, "version": live.model.version,
                            "from_slot": previous.slot if previous else None,
                            "from_version": previous.model.version if previous else None, "reason": reason})

    def status(self) -> dict[str, Any]:
        live = self.live
        return {
            "live": live.slot if live else None,
            "slots": {name: self._slot_view(name, live) for name in SLOTS},
            "counters": None if live is None else {
                "slot": live.slot, "version": live.model.version, "since": live.since,
                "requests": live.requests, "errors": live.errors},
            "auto_rollback": {"window": self.window, "error_rate": self.error_rate,
                              "min_failures": self.min_failures,
                              "watching": bool(live and live.requests < live.watch)},
            "deploying": self.deploying,
            "events": list(self.events),
        }

    def _slot_view(self, name: str, live: Generation | None) -> dict[str, Any]:
        loaded = self.slots[name]
        return {"live": bool(live and live.slot == name),
                "version": loaded.model.version if loaded else None,
                "model_dir": str(loaded.model.model_dir) if loaded else None,
                "loaded_at": loaded.loaded_at if loaded else None}


# ----------------------------------------------------------------------------------------- request formats


class RequestError(ValueError):
    """A malformed scoring request; the message is returned to the caller with `status`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ScoringRequest:
    kind: str  # "data" (the seeds' contract) | "automl" (AutoML v2) | "mlflow" (input_data, split)
    records: list
    method: str = "predict"


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise RequestError("request body is empty; expected a JSON object")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise RequestError("request body is not valid JSON: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RequestError(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
                           f"(char {exc.pos})") from None


def parse_scoring_request(payload: Any) -> ScoringRequest:
    """Recognize the request format; the records themselves are validated by the runtime, the same for all."""
    if not isinstance(payload, dict):
        raise RequestError(f"request body must be a JSON object ({FORMATS_HINT}), got {_type_name(payload)}")
    present = [key for key in ("data", "Inputs", "input_data") if key in payload]
    if not present:
        raise RequestError(f"request body has no `data`, `Inputs` or `input_data` field; expected {FORMATS_HINT}")
    if len(present) > 1:
        raise RequestError(f"request body has {' and '.join(f'`{k}`' for k in present)}; send exactly one format")
    if present[0] == "data":
        request = ScoringRequest("data", _records(payload["data"], "`data`"))
    elif present[0] == "Inputs":
        request = _automl_request(payload)
    else:
        request = ScoringRequest("mlflow", _split_records(payload["input_data"]))
    if len(request.records) > MAX_RECORDS:
        raise RequestError(f"the request has {len(request.records)} records; at most {MAX_RECORDS} per request")
    return request


def _records(value: Any, name: str) -> list:
    if not isinstance(value, list):
        raise RequestError(f"{name} must be a list of records, got {_type_name(value)}")
    return value


def _automl_request(payload: dict) -> ScoringRequest:
    inputs, params = payload["Inputs"], payload.get("GlobalParameters", {})
    if not isinstance(inputs, dict):
        raise RequestError(f'`Inputs` must be an object {{"data": [records]}}, got {_type_name(inputs)}')
    if "data" not in inputs:
        raise RequestError('`Inputs` has no `data` field; expected {"Inputs": {"data": [{column: value, ...}]}}')
    if not isinstance(params, dict):
        raise RequestError(f"`GlobalParameters` must be an object, got {_type_name(params)}")
    method = params.get("method", "predict")
    if method not in AUTOML_METHODS:
        raise RequestError(f'`GlobalParameters.method` must be "predict" or "predict_proba", got '
                           f"{json.dumps(method)[:40]}")
    return ScoringRequest("automl", _records(inputs["data"], "`Inputs.data`"), method)


def _split_records(value: Any) -> list[dict[str, Any]]:
    """MLflow's split orientation ({"columns", "data", "index"?}) as records, so validation is shared."""
    if not isinstance(value, dict):
        raise RequestError('`input_data` must be an object {"columns": [...], "data": [[...]]} (split '
                           f"orientation), got {_type_name(value)}")
    columns, rows = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError("`input_data.columns` must be a list of column names")
    if not isinstance(rows, list):
        raise RequestError(f"`input_data.data` must be a list of rows, got {_type_name(rows)}")
    index = value.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(rows)):
        raise RequestError(f"`input_data.index` must be a list with one entry per row ({len(rows)})")
    records = []
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise RequestError(f"record {i} must be an array of values in `input_data.columns` order, got "
                               f"{_type_name(row)}")
        if len(row) != len(columns):
            raise RequestError(f"record {i} has {len(row)} values but `input_data.columns` names {len(columns)}")
        records.append(dict(zip(columns, row, strict=True)))
    return records


def render(request: ScoringRequest, answer: dict[str, list], version: str) -> dict[str, Any]:
    """The answer in the shape the request's format promises."""
    if request.kind == "data":
        return {"result": answer["result"], "probabilities": answer["probabilities"], "model_version": version}
    if request.kind == "mlflow":
        return {"predictions": answer["result"]}
    if request.method == "predict_proba":
        return {"Results": [[1.0 - p, p] for p in answer["probabilities"]]}
    return {"Results": answer["result"]}


# ---------------------------------------------------------------------------------------------- /score


class ClientGone(Exception):
    pass


class ScoreRoute:
    """POST /score as a plain ASGI middleware in front of FastAPI: the hot path skips routing, the request
    object and the response class; everything else goes on to the app."""

    def __init__(self, app, *, key: bytes, state: BlueGreen, collector=None):
        self.app, self.key, self.state, self.collector = app, key, state, collector

    async def __call__(self, scope, receive, send) -> None:
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

    async def _handle(self, scope, receive) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if scope["method"] != "POST":
            return 405, _dump({"error": "use POST /score"}), [(b"allow", b"POST")]
        if not _key_matches(scope["headers"], self.key):
            return 401, _dump({"error": "missing or invalid key: send the header `Authorization: Bearer <key>`"}), \
                [(b"www-authenticate", b"Bearer")]
        generation = self.state.live  # one read: the whole request uses this model even if a switch happens
        if generation is None:
            return 503, _dump({"error": "no model deployed yet"}), []
        status, answer = await self._score(generation.model, receive)
        self.state.record(generation, status)
        if status != 200:  # uvicorn's access log is off by default (it costs a fifth of a request): say it here
            log.info("POST /score -> %d (model v%s, slot %s)", status, generation.model.version, generation.slot)
        return status, _dump(answer), generation.headers

    async def _score(self, model: ScoringModel, receive) -> tuple[int, dict[str, Any]]:
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
            self.collector.add(request.records, model.version)  # an append; written to storage in batches
        return 200, render(request, answer, model.version)


def _dump(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def _read_body(receive) -> bytes:
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


def _key_matches(headers, key: bytes) -> bool:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key)
    return False


# ------------------------------------------------------------------------------------------ admin routes


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _bearer_matches(request: Request, key: bytes) -> bool:
    return _key_matches(request.scope["headers"], key)


async def _json_body(request: Request) -> tuple[Any, JSONResponse | None]:
    try:
        return parse_json(await request.body()), None
    except RequestError as exc:
        return None, _error(exc.status, str(exc))


def _model_path(value: Any) -> Path | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.startswith("file:"):
        text = unquote(urlsplit(text).path)
    path = Path(text)
    return path if path.is_absolute() else None


@dataclass(frozen=True)
class DeployRequest:
    model_dir: Path
    version: str
    smoke_records: list | None
    digest: str = ""


def _deploy_request(body: Any) -> DeployRequest | JSONResponse:
    if not isinstance(body, dict):
        return _error(400, f"request body must be a JSON object, got {_type_name(body)}")
    model_dir = _model_path(body.get("model_dir"))
    if model_dir is None:
        return _error(400, "`model_dir` must be an absolute path (or file: URI) of an MLflow model directory")
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, str | int) or not str(version).strip():
        return _error(400, "`version` must be a non-empty string or integer")
    smoke_records = body.get("smoke_records")
    if smoke_records is not None and not isinstance(smoke_records, list):
        return _error(400, f"`smoke_records` must be a list of records, got {_type_name(smoke_records)}")
    digest = body.get("digest")
    if digest is not None and not isinstance(digest, str):
        return _error(400, f"`digest` must be a string 'sha256:<hex>', got {_type_name(digest)}")
    return DeployRequest(model_dir, str(version).strip(), smoke_records or None, (digest or "").strip())


def trusted_folder(model_dir: Path, digest: str, version: str, models_root: Path | None) -> Path:
    """The folder to load, once it is known to be under the models root with the registered content; else
    UntrustedModel (nothing has been unpickled)."""
    return check_model_folder(model_dir, root=models_root, expected_digest=digest, version=version).path


def create_app(scoring_key: str, admin_key: str, initial_model: Path | None = None, *,
               initial_version: str = "1", rollback_window: int = ROLLBACK_WINDOW,
               rollback_error_rate: float = ROLLBACK_ERROR_RATE,
               rollback_min_failures: int = ROLLBACK_MIN_FAILURES, collector=None, models_root: Path | None = None,
               initial_digest: str = "") -> FastAPI:
    """The scoring app. `rollback_window` requests after each deploy are watched for a 5xx rate over
    `rollback_error_rate` (with at least `rollback_min_failures` failures); 0 turns auto-rollback off.
    `collector` (an InferenceCollector) receives the records of every answered request, for the drift check.
    Model folders are loaded only from under `models_root` and only with the content hash they were registered
    with (`initial_digest` for `initial_model`, the request's `digest` for a deploy); without a models root no
    folder is loaded at all."""
    if not scoring_key or not admin_key:
        raise ValueError("both a scoring key and an admin key are required")
    score_key, deploy_key = scoring_key.encode("utf-8"), admin_key.encode("utf-8")
    state = BlueGreen(window=rollback_window, error_rate=rollback_error_rate, min_failures=rollback_min_failures)
    if initial_model is not None:
        initial_model = trusted_folder(initial_model, initial_digest, initial_version, models_root)
        model = ScoringModel.load(initial_model, initial_version)
        model.smoke()
        state.deploy(model, reason="served from start")
        log.info("serving model v%s from %s (slot blue)", model.version, initial_model)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        if collector is not None:  # uvicorn re-raises SIGTERM after shutdown: write what is buffered before that
            collector.stop()

    app = FastAPI(title="bankmarketing scoring (local)", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.slots = state
    app.add_middleware(ScoreRoute, key=score_key, state=state, collector=collector)
    app.state.collector = collector
    _add_public_routes(app, state)
    _add_admin_routes(app, state, deploy_key, models_root)
    return app


def _add_public_routes(app: FastAPI, state: BlueGreen) -> None:
    def health() -> dict[str, Any]:
        live = state.live
        return {"status": "ok", "model_version": live.model.version if live else None}

    app.get("/")(health)
    app.get("/health")(health)

    @app.get("/swagger.json")
    def swagger() -> dict[str, Any]:
        live = state.live
        return swagger_document(live.model if live else None)


def _add_admin_routes(app: FastAPI, state: BlueGreen, key: bytes, models_root: Path | None = None) -> None:
    deploy_lock = asyncio.Lock()
    unauthorized = "missing or invalid admin key: send the header `Authorization: Bearer <key>`"

    @app.post("/admin/deploy")
    async def deploy(request: Request):
        if not _bearer_matches(request, key):
            return _error(401, unauthorized)
        body, problem = await _json_body(request)
        if problem is not None:
            return problem
        wanted = _deploy_request(body)
        if isinstance(wanted, JSONResponse):
            return wanted
        try:  # before the lock and before anything is unpickled: where the folder is and what it holds
            folder = await run_in_threadpool(trusted_folder, wanted.model_dir, wanted.digest, wanted.version,
                                             models_root)
        except UntrustedModel as exc:
            log.warning("deploy of model v%s refused (%s): %s", wanted.version, exc.refusal, exc)
            live = state.live
            return _error(exc.refusal.status, f"model v{wanted.version} not deployed: {exc}", reason=exc.refusal,
                          serving=live.model.version if live else None)
        wanted = DeployRequest(folder, wanted.version, wanted.smoke_records, wanted.digest)
        async with deploy_lock:  # deploys run one at a time; scoring and rollbacks never wait for this lock
            return await _deploy(state, wanted)

    @app.post("/admin/rollback")
    async def rollback(request: Request):
        if not _bearer_matches(request, key):
            return _error(401, unauthorized)
        from_version = await _rollback_guard(request)
        if isinstance(from_version, JSONResponse):
            return from_version
        try:
            live, previous = state.rollback("rollback", "requested with POST /admin/rollback",
                                            from_version=from_version)
        except NothingToRollBack as exc:
            return _error(409, str(exc))
        log.warning("rolled back from model v%s (slot %s) to v%s (slot %s)", previous.model.version,
                    previous.slot, live.model.version, live.slot)
        return {"rolled_back_to": live.model.version, "from": previous.model.version, "slot": live.slot,
                "from_slot": previous.slot}

    @app.get("/admin/status")
    async def status(request: Request):
        if not _bearer_matches(request, key):
            return _error(401, unauthorized)
        return state.status()


async def _rollback_guard(request: Request) -> str | None | JSONResponse:
    """The optional body {"from_version": "N"}: roll back only while model vN is live."""
    if not (await request.body()).strip():
        return None
    body, problem = await _json_body(request)
    if problem is not None:
        return problem
    version = body.get("from_version") if isinstance(body, dict) else None
    if not isinstance(body, dict) or isinstance(version, bool) or not isinstance(version, str | int | None):
        return _error(400, 'the body is optional; if sent it must be {"from_version": "N"}')
    return None if version is None else str(version).strip()


async def _deploy(state: BlueGreen, wanted: DeployRequest) -> dict[str, Any] | JSONResponse:
    """Load and smoke-test off the event loop, then switch; a refused model leaves traffic where it was."""
    started = time.perf_counter()
    state.deploying = wanted.version
    try:
        candidate = await run_in_threadpool(ScoringModel.load, wanted.model_dir, wanted.version)
        smoke = await run_in_threadpool(candidate.smoke, wanted.smoke_records)
    except (ModelLoadError, ScoringInputError) as exc:
        return _refused(state, wanted.version, str(exc))
    except Exception as exc:  # anything else from a broken artifact is still the model's fault
        log.exception("deploy of model v%s failed", wanted.version)
        return _refused(state, wanted.version, f"{type(exc).__name__}: {exc}")
    finally:
        state.deploying = None
    live, previous = state.deploy(candidate)
    seconds = round(time.perf_counter() - started, 3)
    log.info("deployed model v%s from %s to slot %s in %.2fs (previous: %s, direct path: %s)", wanted.version,
             wanted.model_dir, live.slot, seconds, previous.model.version if previous else None,
             candidate.direct_path)
    return {"deployed": wanted.version, "previous": previous.model.version if previous else None, "smoke": smoke,
            "seconds": seconds, "slot": live.slot, "previous_slot": previous.slot if previous else None}


def _refused(state: BlueGreen, version: str, reason: str) -> JSONResponse:
    live = state.live
    log.warning("model v%s not deployed: %s", version, reason)
    return _error(422, f"model v{version} not deployed: {reason}", serving=live.model.version if live else None)


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


def _labels() -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string", "enum": [schema.POSITIVE, schema.NEGATIVE]}}


def _definitions(record: dict[str, Any], example: dict[str, Any], version: str) -> dict[str, Any]:
    """Swagger 2.0 has no oneOf: ServiceInput / ServiceOutput list every format's fields (exactly one format
    per request), and each format also has its own definition."""
    columns = list(record["properties"])
    automl = {"Inputs": {"data": [example]}, "GlobalParameters": {"method": "predict"}}
    mlflow = {"input_data": {"columns": columns, "index": [0], "data": [[example[c] for c in columns]]}}
    inputs = {
        "DataInput": {"type": "object", "required": ["data"],
                      "properties": {"data": {"type": "array", "items": record}}, "example": {"data": [example]}},
        "AutoMLInput": {"type": "object", "required": ["Inputs"], "properties": {
            "Inputs": {"type": "object", "required": ["data"],
                       "properties": {"data": {"type": "array", "items": record}}},
            "GlobalParameters": {"type": "object", "properties": {
                "method": {"type": "string", "enum": list(AUTOML_METHODS), "default": "predict"}}}},
            "example": automl},
        "MLflowInput": {"type": "object", "required": ["input_data"], "properties": {"input_data": {
            "type": "object", "required": ["columns", "data"],
            "description": "pandas split orientation: a row per record, values in `columns` order",
            "properties": {"columns": {"type": "array", "items": {"type": "string", "enum": columns}},
                           "index": {"type": "array", "items": {}},
                           "data": {"type": "array", "items": {"type": "array", "items": {}}}}}},
            "example": mlflow},
    }
    probabilities = {"type": "array", "items": {"type": "number", "format": "double"},
                     "description": "probability of `yes` per record"}
    outputs = {
        "DataOutput": {"type": "object", "properties": {"result": _labels(), "probabilities": probabilities,
                                                        "model_version": {"type": "string"}},
                       "example": {"result": ["no"], "probabilities": [0.0731], "model_version": version}},
        "AutoMLOutput": {"type": "object", "properties": {"Results": {
            "type": "array", "items": {},
            "description": 'method "predict": a label ("yes" | "no") per record; "predict_proba": '
                           "[P(no), P(yes)] per record"}}, "example": {"Results": ["no"]}},
        "MLflowOutput": {"type": "object", "properties": {"predictions": _labels()},
                         "example": {"predictions": ["no"]}},
    }
    union_in = {k: v for d in inputs.values() for k, v in d["properties"].items()}
    union_out = {k: v for d in outputs.values() for k, v in d["properties"].items()}
    return {
        "ServiceInput": {"type": "object", "properties": union_in, "example": {"data": [example]},
                         "description": "exactly one of: `data` (DataInput), `Inputs` + optional "
                                        "`GlobalParameters` (AutoMLInput, Azure AutoML v2), `input_data` "
                                        "(MLflowInput, Azure ML MLflow deployment)",
                         "x-examples": {"data": {"data": [example]}, "automl": automl, "mlflow": mlflow}},
        "ServiceOutput": {"type": "object", "properties": union_out,
                          "description": "DataOutput for `data`, AutoMLOutput for `Inputs`, MLflowOutput for "
                                         "`input_data`", "example": outputs["DataOutput"]["example"]},
        **inputs, **outputs,
    }


def swagger_document(model: ScoringModel | None) -> dict[str, Any]:
    """Swagger 2.0 for /score in the shape Azure ML generates for a deployed model's scoring script."""
    kinds = model.kinds if model is not None else {c: schema.COLUMNS[c] for c in schema.FEATURES}
    # The document is public (no key): its example is the fixed synthetic record, never the model's saved input
    # example (a model trained before those were synthetic carries rows of its training data there).
    example = {c: EXAMPLE_RECORD.get(c) for c in kinds}
    record_schema = {"type": "object", "required": list(kinds),
                     "properties": {c: _property(c, k) for c, k in kinds.items()}}
    error = {"schema": {"$ref": "#/definitions/ErrorResponse"}}
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
                    "description": "Run the deployed model on the records and return a prediction for each. "
                                   "Three request formats: " + FORMATS_HINT + ". The headers "
                                   "`azureml-model-deployment` and `x-model-version` name the slot and model.",
                    "security": [{"Bearer": []}],
                    "parameters": [{
                        "name": "serviceInputPayload", "in": "body", "required": True,
                        "description": "The input payload for the real-time machine learning service.",
                        "schema": {"$ref": "#/definitions/ServiceInput"},
                    }],
                    "responses": {
                        "200": {"description": "A prediction per input record, in order, in the request "
                                               "format's answer shape.",
                                "schema": {"$ref": "#/definitions/ServiceOutput"}},
                        "400": {"description": "The body is not JSON, matches no format, or a record is invalid "
                                               "(the message names the record index and the column).", **error},
                        "401": {"description": "Missing or invalid key.", **error},
                        "503": {"description": "No model is deployed yet.", **error},
                        "default": {"description": "The service failed to execute due to an error.", **error},
                    },
                },
            },
        },
        "definitions": {
            **_definitions(record_schema, example, model.version if model is not None else "1"),
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
    parser.add_argument("--model-digest", default="", help="the registered content hash of --model-dir "
                        "(sha256:...); the folder is not loaded unless it matches")
    parser.add_argument("--models-root", type=Path, default=None,
                        help="the only folder model folders are loaded from (the local pipeline's runs folder); "
                             "without it /admin/deploy refuses every folder")
    parser.add_argument("--rollback-window", type=int, default=ROLLBACK_WINDOW,
                        help=f"requests watched after a deploy for auto-rollback; 0 = off (default {ROLLBACK_WINDOW})")
    parser.add_argument("--rollback-error-rate", type=float, default=ROLLBACK_ERROR_RATE,
                        help=f"5xx share that rolls a new model back (default {ROLLBACK_ERROR_RATE})")
    parser.add_argument("--rollback-min-failures", type=int, default=ROLLBACK_MIN_FAILURES,
                        help=f"fewest 5xx that can trigger it (default {ROLLBACK_MIN_FAILURES})")
    parser.add_argument("--collect-container", default="",
                        help="collect scoring inputs to this blob container (connection string in "
                             "INFERENCE_STORAGE), like Azure ML's data collector; off when empty")
    parser.add_argument("--access-log", action="store_true",
                        help="log every request (off by default: it costs about a fifth of a scoring request)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redaction.install_logging()  # SCORING_KEY, SCORING_ADMIN_KEY, the storage key: never in a log line
    logging.getLogger("azure").setLevel(logging.WARNING)  # the storage SDK logs every HTTP call at INFO
    scoring_key, admin_key = os.environ.get("SCORING_KEY", ""), os.environ.get("SCORING_ADMIN_KEY", "")
    if not scoring_key or not admin_key:
        print("error: set SCORING_KEY and SCORING_ADMIN_KEY in the environment", file=sys.stderr)
        return 2
    collector = _collector(args.collect_container, os.environ.get("INFERENCE_STORAGE", ""))
    try:
        app = create_app(scoring_key, admin_key, args.model_dir, initial_version=args.model_version,
                         rollback_window=args.rollback_window, rollback_error_rate=args.rollback_error_rate,
                         rollback_min_failures=args.rollback_min_failures, collector=collector,
                         models_root=args.models_root, initial_digest=args.model_digest)
    except UntrustedModel as exc:
        print(f"error: not serving {args.model_dir}: {exc}", file=sys.stderr)
        return 1
    except (ModelLoadError, ScoringInputError) as exc:
        print(f"error: cannot serve {args.model_dir}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info", access_log=args.access_log)
    return 0


def _collector(container: str, connection: str):
    if not container:
        return None
    if not connection:
        raise SystemExit("error: --collect-container needs INFERENCE_STORAGE (a storage connection string)")
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.inference_data import InferenceCollector, blob_writer

    client = BlobServiceClient.from_connection_string(connection).get_container_client(container)
    try:
        client.create_container()
    except Exception as exc:  # already there, or storage not reachable yet: writes retry later
        log.info("inference data container %s: %s", container, type(exc).__name__)
    return InferenceCollector(blob_writer(client)).start()


if __name__ == "__main__":
    sys.exit(main())
