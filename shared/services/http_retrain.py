"""`POST /api/retrain`: an external system asks for a retrain. A public API, so every check answers with an RFC 9457
problem document that says exactly what to fix.

Order of the checks (cheap and stateless first, one storage write each after that), see shared.services.http_guard:
the caller's refusals this minute (429 over REJECT_LIMIT), method (405), size from Content-Length (413), media type
(415), HMAC signature and timestamp (401), replay (401) — a refusal up to here is counted in the caller's
per-minute aggregate, not audited one by one — then, authenticated and audited per request: per-caller rate (429),
JSON and schema (400), `Idempotency-Key` (a stored answer, or 409), dataset (404), a retrain already in flight for
it (409), submit (502 when the pipeline endpoint refuses), 202.

Retries: a client that lost the answer re-sends the same body with the same `Idempotency-Key`, signed again with
a fresh timestamp (the same signed bytes twice are a replay); it gets the first answer back, never a second run.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from urllib.parse import unquote, urlparse

from shared import telemetry
from shared.domain import pipeline_params
from shared.domain.outcomes import Outcome, RequestStatus
from shared.domain.records import AuditRecord, DatasetVersion, new_id
from shared.ports import DatasetLog, Idempotency, IdempotencyKeyError, RateLimit, Refusals, Replays
from shared.services import http_guard
from shared.services.dispatch import RetrainDispatch, request_and_dispatch
from shared.services.http_guard import MAX_BODY, TITLES, HttpAnswer, Refused, WebhookRequest
from shared.services.retrain import PipelineTarget
from shared.services.run_queries import request_view

MAX_TEXT = 200
FIELDS = ("dataset", "parameters", "reason", "requested_by")
# A registered dataset version: its row key is the number in 10 digits (shared.adapters.record_stores).
MAX_DATASET_VERSION = 10**10 - 1
__all__ = ["MAX_BODY", "TITLES", "HttpAnswer", "WebhookGuard", "WebhookIntake", "WebhookRequest", "problem",
           "retrain_http"]
INSTANCE = "/api/retrain"
REPLAY_HINT = " — to retry safely, send the same Idempotency-Key"


@dataclass(frozen=True)
class WebhookGuard:
    """The webhook's shared secret(s) and durable state (shared.adapters.webhook_state)."""

    secrets: tuple[str, ...]
    replay: Replays
    rate: RateLimit
    idempotency: Idempotency
    tolerance_s: int = 300
    rejections: Refusals | None = None  # refusals before authentication, counted (None: each is audited)


@dataclass(frozen=True)
class WebhookIntake:
    """What `POST /api/retrain` needs: the guard that admits a request (None: in-process callers and tests of the
    rest — no signature, replay, rate or idempotency) and the way to ask for a retrain."""

    guard: WebhookGuard | None
    retrain: RetrainDispatch


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra) -> HttpAnswer:
    return http_guard.problem(status, detail, headers, instance=INSTANCE, **extra)


def retrain_http(request: WebhookRequest | bytes, intake: WebhookIntake, now: float | None = None,
                 function: str = "retrain_http") -> tuple[HttpAnswer, AuditRecord | None]:
    """Admit, parse, then submit through the outbox (single flight, retries), like every trigger's retrain. The
    record is None for a request refused before it authenticated: that refusal is counted in
    `guard.rejections`, not audited."""
    if isinstance(request, bytes):
        request = WebhookRequest(request, {"content-type": "application/json"})
    now = time.time() if now is None else now
    guard = intake.guard
    if guard is not None and guard.rejections is not None:
        with telemetry.span("retrain_http", kind="server", size=len(request.body)) as span:
            refused = http_guard.admit_with(guard, request, instance=INSTANCE, now=now, span=span,
                                            replay_hint=REPLAY_HINT)
            if refused is not None:
                return refused, None
    record = AuditRecord(id=new_id("http-"), trigger="http", function=function, started_at=time.time(),
                         source=f"{request.method} /api/retrain")
    record.data["client"] = request.client
    with telemetry.span("retrain_http", kind="server", trigger_id=record.id, size=len(request.body)) as span:
        try:
            answer, record = _handle(request, record, intake, now)
        except Refused as exc:
            answer = exc.answer(INSTANCE)
        if answer.status >= 400:
            outcome = Outcome.FAILED if answer.status >= 500 else Outcome.REJECTED
            record.finish(outcome, f"{outcome} ({answer.status}): {answer.body.get('detail')}")
            span.fail(record.detail)
        # A 202 from the submit path: the record is the dispatcher's now (this one's or the outbox timer's, which
        # may claim the request first) and already says 202; a save here could undo the outcome it writes.
        dispatcher_owns = answer.status == 202 and record.data.get("status") == 202
        record.data["status"] = answer.status
        span.set(status=answer.status, outcome=record.outcome)
    if not dispatcher_owns:
        intake.retrain.audit.save(record)
    return answer, record


def _handle(request: WebhookRequest, record: AuditRecord, intake: WebhookIntake,
            now: float) -> tuple[HttpAnswer, AuditRecord]:
    """Authenticated from here (or unguarded): the per-caller rate, the body, then the one submit path — wrapped
    in the idempotency record when the caller sent an `Idempotency-Key`. Refusals raise Refused."""
    guard = intake.guard
    if guard is None or guard.rejections is None:  # otherwise retrain_http admitted it (shared.services.http_guard)
        http_guard.check_shape(request, instance=INSTANCE)
    if guard is not None:
        if guard.rejections is None:
            http_guard.authenticate(request, secrets=guard.secrets, replay=guard.replay,
                                    tolerance_s=guard.tolerance_s, now=now, replay_hint=REPLAY_HINT)
        http_guard.check_rate(guard.rate, request.client, now)
    fields = _parse(request.body, intake.retrain.target)
    record.data["requested_by"] = fields.get("requested_by", "")
    record.data["reason"] = fields.get("reason", "")  # the caller's words: audit only, never the pipeline's
    key = request.header("idempotency-key") if guard is not None else None
    if guard is None or key is None:
        return _submit(fields, record, intake.retrain)
    return _idempotent(key, fields, record, guard.idempotency, intake.retrain, now)


def _parse(body: bytes, target: PipelineTarget) -> dict:
    """The request object, schema-checked; a violation names the field. `parameters` is an allowlist
    (pipeline_params.CALLER_PARAMETERS): what is compared, deployed or recorded as lineage is the service's."""
    try:
        request = json.loads(body, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8 text") from None
    except ValueError as exc:  # also NaN/Infinity and integers of more than 4,300 digits
        raise Refused(400, f"body is not valid JSON: {pipeline_params.clip(exc, 120)}") from None
    except RecursionError:
        raise Refused(400, "body is not valid JSON: nested too deeply") from None
    if not isinstance(request, dict):
        raise Refused(400, 'body must be a JSON object like {"dataset": "latest"}')
    unknown = sorted(set(request) - set(FIELDS))
    if unknown:
        raise Refused(400, f"unknown field {pipeline_params.shown(unknown[0])}; the fields are {', '.join(FIELDS)}")
    dataset = request.get("dataset")
    if dataset is None:
        raise Refused(400, "field 'dataset' is required: \"latest\", a version (\"3\" or \"v3\") or a blob URI")
    if not isinstance(dataset, str) or not dataset.strip():
        raise Refused(400, f"field 'dataset' must be a non-empty string, got {pipeline_params.clip(dataset, 50)}")
    for name in ("dataset", "reason", "requested_by"):
        value = request.get(name, "")
        if name != "dataset" and (not isinstance(value, str) or len(value) > MAX_TEXT):
            raise Refused(400, f"field {name!r} must be a string of at most {MAX_TEXT} characters")
        if not _storable(value):
            raise Refused(400, f"field {name!r} must be Unicode text without lone surrogates or NUL characters")
    parameters = request.get("parameters", {})
    if not isinstance(parameters, dict):
        raise Refused(400, "field 'parameters' must be an object of pipeline parameters")
    reserved = sorted(n for n in parameters if n in pipeline_params.PARAMETERS
                      and n not in pipeline_params.CALLER_PARAMETERS)
    if reserved:
        hint = "; use the top-level 'dataset' and 'reason' fields" if reserved[0] in _TOP_LEVEL else ""
        raise Refused(400, f"parameters.{reserved[0]} is set by the service, not by the caller; a caller may set "
                            f"{', '.join(pipeline_params.CALLER_PARAMETERS)}{hint}")
    try:
        request["parameters"] = pipeline_params.validate_caller(parameters, max_time_budget_s=target.max_budget_s)
    except pipeline_params.ParameterError as exc:
        raise Refused(400, f"parameters.{exc.name}: {exc.message}") from None
    return request


# Parameters whose caller-facing equivalent is a top-level field.
_TOP_LEVEL = ("dataset_version", "dataset_name", "dataset_uri", "reason")


def _no_constant(token: str):
    raise ValueError(f"{token} is not a JSON number")


def _storable(text: str) -> bool:
    """Text a table row can hold: encodable as UTF-8 (no lone surrogate from a `\\ud800` escape) and no NUL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _idempotent(key: str, fields: dict, record: AuditRecord, idempotency: Idempotency, retrain: RetrainDispatch,
                now: float) -> tuple[HttpAnswer, AuditRecord]:
    """The first answer again for a key seen before; otherwise the submit, its answer stored under the key."""
    request_hash = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    try:
        started = idempotency.begin(key, request_hash, now)
    except IdempotencyKeyError as exc:
        raise Refused(400, f"header Idempotency-Key: {exc}") from None
    record.data["idempotency"] = started.state
    if started.state == "replay":
        record.finish(Outcome.DUPLICATE, f"Idempotency-Key seen before: the first answer ({started.status}) again")
        headers = {"Idempotent-Replayed": "true"} | ({"Location": started.location} if started.location else {})
        return HttpAnswer(started.status, started.body, headers), record
    if started.state == "conflict":
        raise Refused(409, "this Idempotency-Key was used with a different request body in the last 24 h; use a "
                           "new key for a new request")
    if started.state == "in_progress":
        raise Refused(409, "a request with this Idempotency-Key is still being handled; retry in a few seconds",
                      {"Retry-After": "2"})
    try:
        answer, record = _submit(fields, record, retrain)
    except Refused:
        idempotency.abandon(key, owner=started.owner)  # nothing was started: a retry may go through
        raise
    except Exception:
        if not {"queued", "posted"} & record.stages.keys():  # failed before anything was asked for: free the key
            idempotency.abandon(key, owner=started.owner)
        raise
    if answer.status >= 400:  # the pipeline endpoint refused the run for good: a retry may go through
        idempotency.abandon(key, owner=started.owner)
        return answer, record
    idempotency.complete(key, answer.status, answer.body, answer.headers.get("Location"), owner=started.owner,
                         now=now)
    return answer, record


def _submit(fields: dict, record: AuditRecord, retrain: RetrainDispatch) -> tuple[HttpAnswer, AuditRecord]:
    """The one submit path: refused (409) while a retrain of the same version is in flight or queued; else into the
    outbox. Returns the answer and the audit record as the dispatcher left it."""
    dataset = resolve_dataset(fields["dataset"], retrain.datasets)
    busy = [r for r in retrain.runs.in_flight() if r.dataset_version == dataset.version]
    if busy:
        raise Refused(409, f"a retrain of dataset v{dataset.version} is already in flight (run "
                           f"{busy[-1].run_id}, {busy[-1].status})", {"Location": f"/api/runs/{busy[-1].run_id}"})
    waiting = [r for r in retrain.outbox.list(RequestStatus.PENDING) + retrain.outbox.list(RequestStatus.SUBMITTING)
               if r.dataset_version == dataset.version]
    if waiting:
        raise Refused(409, f"a retrain of dataset v{dataset.version} is already queued (request {waiting[-1].id})",
                      {"Location": f"/api/runs/{waiting[-1].id}"})
    record.data["status"] = 202  # accepted into the outbox: in the record before the dispatcher can read it
    stored, record = request_and_dispatch(record, dataset, retrain, reason=pipeline_params.Reason.HTTP.value,
                                          parameters=fields["parameters"])
    if stored.status == RequestStatus.SUBMITTED:
        run = retrain.runs.get(stored.run_id)
        return HttpAnswer(202, {**asdict(run), "id": run.run_id, "audit_id": record.id},
                          {"Location": f"/api/runs/{run.run_id}"}), record
    if stored.status == RequestStatus.FAILED:  # refused for good (a 4xx from the pipeline endpoint)
        return problem(502, f"the pipeline endpoint did not accept the run: {stored.last_error}"), record
    location = f"/api/runs/{stored.id}"  # queued: names the run once submitted
    return HttpAnswer(202, {**request_view(stored, retrain.target.experiment), "id": stored.id,
                            "audit_id": record.id}, {"Location": location}), record


def resolve_dataset(ref: str, datasets: DatasetLog) -> DatasetVersion:
    """"latest", "3" / "v3", or the URI of a blob: a registered version's blob, or an upload's blob once the blob
    trigger has registered it."""
    text = ref.strip()
    if text.lower() == "latest":
        found = datasets.latest()
        if found is None:
            raise Refused(404, "no dataset version is registered yet; upload a file first")
        return found
    number = text.lower().removeprefix("v")
    if number.isascii() and number.isdigit():  # ASCII only: "²".isdigit() is True and int("²") fails
        digits = number.lstrip("0") or "0"
        version = int(digits) if len(digits) <= len(str(MAX_DATASET_VERSION)) else MAX_DATASET_VERSION + 1
        if not 1 <= version <= MAX_DATASET_VERSION:
            raise Refused(400, f"field 'dataset': a version is a number from 1 to {MAX_DATASET_VERSION}, got "
                                f"{pipeline_params.shown(text)}")
        found = datasets.get(version)
        if found is None:
            raise Refused(404, f"dataset version {pipeline_params.clip(text)} does not exist")
        return found
    try:
        uri = urlparse(text)
    except ValueError:  # e.g. an unbalanced '[' in the host
        uri = None
    if uri is None or uri.scheme not in ("http", "https") or not uri.path.strip("/"):
        raise Refused(400, f"field 'dataset' must be \"latest\", a version (\"3\" or \"v3\") or a blob URI "
                            f"(https://<account>.blob.core.windows.net/<container>/<path>), got "
                            f"{pipeline_params.shown(text[:80])}")
    path = unquote(uri.path).strip("/")
    for version in reversed(datasets.list()):  # Azure: /container/path; Azurite: /account/container/path
        for blob in (f"{version.container}/{version.path}", version.source_blob):
            if path == blob or path.endswith("/" + blob):
                return version
    raise Refused(404, f"no registered dataset version has the blob {pipeline_params.shown(path[:120])}; upload "
                        "it to the incoming container first (the blob trigger validates and registers it)")
