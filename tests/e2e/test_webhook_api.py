"""`POST /api/retrain` as a public API, through the real local stack over HTTP: every refusal is an RFC 9457
problem document that says what to fix; a refusal before the request authenticated (405, 413, 415, 401) is counted
in the caller's per-minute aggregate (RejectionLog), every later one leaves an audit record; a retried request
never submits a second run.

Tests in a module run one at a time, so a request's audit record is the one `retrain_http` record that appeared
while it was answered. The rate limit is tested on stacks of their own (a few seconds each) with a limit of
RATE_LIMIT requests per window, so no other request shares their callers' allowance; the module's stack has a limit
no test reaches.
"""

from __future__ import annotations

import json
import time
import uuid

import pandas as pd
import pytest
import requests

from shared.adapters import storage
from shared.adapters.outbox import Outbox
from shared.adapters.webhook_state import RejectionLog
from shared.domain.validation import canonical_csv, content_hash
from shared.domain.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from shared.settings import Settings
from tests.e2e.api_stack import pipeline_jobs, start_api_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

RATE_LIMIT = 5
RATE_WINDOW_S = 3600  # fixed windows aligned to the clock: a long one, so a burst rarely straddles two
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # limits no test reaches (the refusal throttle has its own tests: tests/security/test_rejections.py)
    s = start_api_stack(tmp_path_factory.mktemp("webhook-stack"), WEBHOOK_RATE_LIMIT="100000", REJECT_LIMIT="100000")
    yield s
    s.stop()


@pytest.fixture
def rate_stack(tmp_path_factory):
    """A stack of this test's own with a small rate limit."""
    s = start_api_stack(tmp_path_factory.mktemp("rate-stack"), WEBHOOK_RATE_LIMIT=str(RATE_LIMIT),
                    WEBHOOK_RATE_WINDOW_S=str(RATE_WINDOW_S))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def training_csv(small_bank_csv) -> bytes:
    return canonical_csv(pd.read_csv(small_bank_csv).head(1500))


def idle(stack) -> bool:
    """No run in flight and no request waiting: a submit goes out at once (single flight queues it otherwise)."""
    outbox = Outbox(storage.ensure_table(storage.table_service(Settings(
        storage_connection=stack.config.connection_string)), "outbox"))
    return not stack.runs.in_flight() and outbox.pending() is None and not outbox.list("submitting")


@pytest.fixture
def dataset(stack, training_csv):
    """A dataset version of this test's own (registered directly, so no upload trigger submits a run), once the
    stack is idle: a submit here goes out at once instead of queueing behind another test's run."""
    wait_for(lambda: idle(stack), timeout=180, what="no run in flight")
    return stack.datasets.register(training_csv, content_hash=content_hash(training_csv), rows=1500, columns=21,
                                   source_blob=f"e2e/{uuid.uuid4().hex}.csv", source_etag=uuid.uuid4().hex,
                                   dialect="comma")


# ------------------------------------------------------------------------------ helpers


def secrets_of(stack) -> dict[str, str]:
    return {"function key": stack.host_keys.function_keys["default"], "master key": stack.host_keys.master_key,
            "webhook secret": stack.secrets["webhook_secret"], "pipeline token": stack.secrets["pipeline_token"]}


def encode(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def post(stack, body: bytes | dict, *, signed: bool = True, timestamp: int | None = None, key: bool = True,
         idempotency_key: str | None = None, content_type: str = "application/json", headers: dict | None = None,
         method: str = "POST") -> requests.Response:
    """One request to /api/retrain: with the function key, signed over the exact bytes sent (unless told not).
    Two requests with the same body signed in the same second are the same message (the second is a replay), so
    tests that sign give their bodies something unique."""
    data = encode(body) if isinstance(body, dict) else body
    sent = {"Content-Type": content_type}
    if key:
        sent["x-functions-key"] = stack.host_keys.function_keys["default"]
    if signed:
        sent.update(sign(stack.secrets["webhook_secret"], data, timestamp))
    if idempotency_key is not None:
        sent["Idempotency-Key"] = idempotency_key
    sent.update(headers or {})
    response = requests.request(method, stack.config.host_url + "/api/retrain", data=data, headers=sent,
                                timeout=30, allow_redirects=False)
    assert_no_secrets(stack, response)
    return response


def assert_no_secrets(stack, response: requests.Response) -> None:
    for name, value in secrets_of(stack).items():
        assert value not in response.text, f"the response body carries the {name}"
        for header, text in response.headers.items():
            assert value not in text, f"response header {header} carries the {name}"


def assert_problem(response: requests.Response, status: int, *words: str) -> dict:
    """An RFC 9457 problem document with this status whose `detail` names every one of `words`."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].split(";")[0].strip() == PROBLEM, response.headers
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["type"] == "about:blank", problem
    assert isinstance(problem["detail"], str) and problem["detail"], problem
    for word in words:
        assert word in problem["detail"], (word, problem["detail"])
    return problem


def webhook_records(stack) -> dict:
    return {r.id: r for r in stack.audit.list() if r.function == "retrain_http"}


def audited(stack, send):
    """`send()`'s response and the one audit record the webhook wrote for it (saved before the answer goes out)."""
    before = webhook_records(stack)
    response = send()
    new = [r for i, r in webhook_records(stack).items() if i not in before]
    assert len(new) == 1, f"{len(new)} new webhook audit records for one request"
    return response, new[0]


def assert_rejected(stack, record, status: int):
    assert record.outcome == "rejected", (record.outcome, record.detail)
    assert record.data["status"] == status and record.detail.startswith(f"rejected ({status}): ")
    assert record.trigger == "http" and record.finished_at is not None
    for name, value in secrets_of(stack).items():
        assert value not in json.dumps(record.to_dict()), f"the audit record carries the {name}"
    return record


PRE_AUTHENTICATION = (401, 405, 413, 415)  # refused before the signature is verified: counted, not audited


def rejections(stack) -> list:
    settings = Settings(storage_connection=stack.config.connection_string)
    return RejectionLog(storage.ensure_table(storage.table_service(settings), settings.webhook_table)).list(50)


def counted(stack, send, status: int):
    """`send()`'s response, refused before authentication: no audit record, one more refusal in the caller's
    aggregate, whose newest reason is this status."""
    before, total = webhook_records(stack), sum(r.count for r in rejections(stack))
    response = send()
    assert webhook_records(stack).keys() == before.keys(), "a refusal before authentication was audited"
    rows = rejections(stack)
    assert sum(r.count for r in rows) == total + 1, "the refusal was not counted in the caller's aggregate"
    newest = max((n for r in rows for n in r.reasons), key=lambda n: n["at"])
    assert newest["status"] == status and newest["route"] == "/api/retrain", newest
    return response


def refused(stack, status: int, *words: str, **kwargs) -> dict:
    """Send one request that must be refused with `status`: a problem document, and a `rejected` audit record —
    or, refused before authentication, one more count in the caller's aggregate instead."""
    body = kwargs.pop("body", None) or {"dataset": "latest", "requested_by": uuid.uuid4().hex}
    if status in PRE_AUTHENTICATION:
        return assert_problem(counted(stack, lambda: post(stack, body, **kwargs), status), status, *words)
    response, record = audited(stack, lambda: post(stack, body, **kwargs))
    problem = assert_problem(response, status, *words)
    assert_rejected(stack, record, status)
    return problem


def pipeline_submissions(stack, dataset_version: int) -> list[dict]:
    """What the local pipeline endpoint itself received for this dataset version."""
    return [r for r in pipeline_jobs(stack) if str(r["inputs"].get("dataset_version")) == str(dataset_version)]


# ------------------------------------------------------------------------------ 400


def test_malformed_json_is_400(stack):
    refused(stack, 400, "not valid JSON", body=b'{"dataset": "latest",')


@pytest.mark.parametrize(("body", "words"), [
    pytest.param({"dataset": "latest", "colour": "red"}, ("unknown field 'colour'",), id="unknown-field"),
    pytest.param({"reason": "nightly"}, ("field 'dataset' is required",), id="dataset-missing"),
    pytest.param({"dataset": 3}, ("field 'dataset' must be a non-empty string",), id="dataset-not-a-string"),
    pytest.param({"dataset": "latest", "reason": "x" * 201}, ("field 'reason'", "at most 200 characters"),
                 id="reason-too-long"),
    pytest.param({"dataset": "latest", "parameters": {"time_budget_s": "soon"}},
                 ("parameters.time_budget_s", "must be an integer"), id="bad-parameter-type"),
    pytest.param({"dataset": "latest", "parameters": {"dataset_version": 1}}, ("parameters.dataset_version",),
                 id="reserved-parameter"),
    pytest.param({"dataset": "latest", "parameters": {"learning_rate": 0.1}},
                 ("parameters.learning_rate", "unknown parameter"), id="unknown-parameter"),
])
def test_a_schema_violation_is_400_naming_the_field(stack, body, words):
    refused(stack, 400, *words, body=body)


def test_a_reason_of_exactly_200_characters_passes_the_schema(stack):
    """The boundary: 200 is allowed (the request then fails later, on the dataset that does not exist)."""
    refused(stack, 404, "v999999", body={"dataset": "v999999", "reason": "x" * 200})


# ------------------------------------------------------------------------------ 401


def test_a_missing_function_key_is_refused_by_the_host(stack):
    before = webhook_records(stack)
    response = post(stack, {"dataset": "latest"}, key=False)
    # The host refuses before the function runs: a bare 401 (the document says it may have no body) and no audit.
    assert response.status_code == 401
    assert webhook_records(stack).keys() == before.keys()


def test_a_wrong_function_key_is_refused_by_the_host(stack):
    response = post(stack, {"dataset": "latest"}, key=False, headers={"x-functions-key": "not-the-key"})
    assert response.status_code == 401


def test_a_missing_signature_is_401(stack):
    refused(stack, 401, f"missing {SIGNATURE_HEADER}", signed=False,
            headers={TIMESTAMP_HEADER: str(int(time.time()))})


def test_an_unsigned_request_is_401(stack):
    refused(stack, 401, f"missing {SIGNATURE_HEADER}", signed=False)


def test_a_bad_signature_is_401(stack):
    body = encode({"dataset": "latest"})
    forged = sign("not-the-webhook-secret", body)
    refused(stack, 401, "does not match", body=body, signed=False, headers=forged)


def test_a_signature_over_other_bytes_is_401(stack):
    """Signing re-serialised JSON instead of the bytes sent fails: the signature covers the raw body."""
    headers = sign(stack.secrets["webhook_secret"], encode({"dataset": "latest"}))
    refused(stack, 401, "does not match", body=b'{"dataset": "latest"}', signed=False, headers=headers)


def test_a_missing_timestamp_is_401(stack):
    body = encode({"dataset": "latest"})
    headers = {SIGNATURE_HEADER: sign(stack.secrets["webhook_secret"], body)[SIGNATURE_HEADER]}
    refused(stack, 401, f"missing {TIMESTAMP_HEADER}", body=body, signed=False, headers=headers)


def test_an_expired_timestamp_is_401(stack):
    refused(stack, 401, TIMESTAMP_HEADER, "s old", "within 300 s (5 minutes)", timestamp=int(time.time()) - 301 - 5)


def test_a_timestamp_in_the_future_is_401(stack):
    refused(stack, 401, "in the future", timestamp=int(time.time()) + 600)


def test_a_replayed_request_is_401(stack):
    body = encode({"dataset": "v999999", "requested_by": uuid.uuid4().hex})  # 404: nothing is submitted, but
    headers = sign(stack.secrets["webhook_secret"], body)  # the signed message is remembered
    assert_problem(post(stack, body, signed=False, headers=headers), 404)
    again = counted(stack, lambda: post(stack, body, signed=False, headers=headers), 401)  # the same bytes
    assert_problem(again, 401, "replay", "Idempotency-Key")


# ------------------------------------------------------------------------------ 404


def test_an_unknown_run_is_404(stack):
    key = stack.host_keys.function_keys["default"]
    response = requests.get(stack.config.host_url + "/api/runs/nope", headers={"x-functions-key": key}, timeout=10)
    assert_no_secrets(stack, response)
    assert_problem(response, 404, "nope")


def test_an_unknown_dataset_version_is_404(stack):
    refused(stack, 404, "dataset version v999999 does not exist", body={"dataset": "v999999", "reason": "404"})


def test_an_unregistered_blob_uri_is_404(stack):
    refused(stack, 404, "no registered dataset version has the blob",
            body={"dataset": "https://account.blob.core.windows.net/incoming/never-uploaded.csv"})


# ------------------------------------------------------------------------------ 405, 413, 415


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_a_wrong_method_is_405_with_allow(stack, method):
    response = counted(stack, lambda: post(stack, b"", signed=False, method=method), 405)
    assert_problem(response, 405, method, "use POST")
    assert response.headers["Allow"] == "POST"


def test_a_wrong_method_without_a_key_is_refused_by_the_host(stack):
    assert post(stack, b"", signed=False, key=False, method="GET").status_code == 401


def test_a_body_over_1_mb_is_413(stack):
    body = b'{"dataset":"latest","reason":"' + b"x" * (1024 * 1024) + b'"}'
    refused(stack, 413, "1048576 bytes (1 MB)", body=body)


def test_a_body_of_exactly_1_mb_is_not_413(stack):
    filler = 1024 * 1024 - len(b'{"dataset":"v999999","reason":""}')
    body = b'{"dataset":"v999999","reason":"' + b"x" * filler + b'"}'
    assert len(body) == 1024 * 1024
    refused(stack, 400, "field 'reason'", body=body)  # past the size check: refused by the schema instead


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_wrong_content_type_is_415(stack, content_type):
    response = counted(stack, lambda: post(stack, {"dataset": "latest"}, content_type=content_type), 415)
    assert_problem(response, 415, "Content-Type must be application/json")
    assert response.headers["Accept-Post"] == "application/json"


def test_json_with_a_charset_is_accepted(stack):
    refused(stack, 404, "v999999", body={"dataset": "v999999", "reason": "charset"},
            content_type="application/json; charset=utf-8")


# ------------------------------------------------------------------------------ 202, idempotency, 409


def test_a_signed_request_submits_a_run(stack, dataset):
    """The route stores the request in the outbox and submits it itself. The outbox timer (every 2 s here, as
    OUTBOX_SCHEDULE runs in Azure) may claim it in between on a loaded machine: the answer is then 202 Queued,
    its Location names the request, and that id names the run once the timer has submitted it. Either way
    exactly one run reaches the pipeline endpoint."""
    body = {"dataset": f"v{dataset.version}", "reason": "ci", "requested_by": "e2e",
            "parameters": {"time_budget_s": 3}}
    response, record = audited(stack, lambda: post(stack, body))
    assert response.status_code == 202, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    answer = response.json()
    assert answer["id"] == answer["run_id"] and answer["reason"] == "http"
    assert answer["dataset_version"] == dataset.version
    assert response.headers["Location"] == f"/api/runs/{answer['run_id']}"
    assert "Idempotent-Replayed" not in response.headers
    assert record.id == answer["audit_id"]
    assert record.data["requested_by"] == "e2e" and record.data["reason"] == "ci"  # the caller's text: audit only
    run = submitted_run(stack, response)
    if answer["status"] == "Submitted":
        assert record.outcome == "submitted" and record.run_id == answer["run_id"] == run["run_id"]
    else:
        # the record, read just after the answer, is the outbox's: queued, or submitted already
        assert answer["status"] == "Queued" and record.outcome in ("queued", "submitted"), (answer, record.outcome)
        assert run["status"] not in ("Superseded", "Failed"), run
        assert run["run_id"] != answer["run_id"]  # the request's id now names the pipeline run
    assert [r["name"] for r in pipeline_submissions(stack, dataset.version)] == [run["run_id"]]


def test_a_retry_with_the_same_idempotency_key_returns_the_first_run(stack, dataset):
    body = encode({"dataset": f"v{dataset.version}", "reason": "retry", "parameters": {"time_budget_s": 3}})
    idem = str(uuid.uuid4())
    first = post(stack, body, idempotency_key=idem)
    assert first.status_code == 202, first.text
    # a retry is a new message: re-signed with a later timestamp (the same bytes would be a replay)
    later = int(time.time()) + 1
    again, record = audited(stack, lambda: post(stack, body, idempotency_key=idem, timestamp=later))
    assert again.status_code == 202, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["run_id"] == first.json()["run_id"] and again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert record.outcome == "duplicate" and record.data["status"] == 202
    # one run: in the service's records and at the pipeline endpoint itself
    assert [r.run_id for r in stack.runs.list() if r.dataset_version == dataset.version] == [first.json()["run_id"]]
    assert [r["name"] for r in pipeline_submissions(stack, dataset.version)] == [first.json()["run_id"]]


def test_the_same_idempotency_key_with_another_body_is_409(stack, dataset):
    idem = str(uuid.uuid4())
    first = post(stack, {"dataset": f"v{dataset.version}", "reason": "one"}, idempotency_key=idem)
    assert first.status_code == 202, first.text
    refused(stack, 409, "Idempotency-Key", "different request body",
            body={"dataset": f"v{dataset.version}", "reason": "two"}, idempotency_key=idem)
    assert len(pipeline_submissions(stack, dataset.version)) == 1


def test_a_failed_request_does_not_burn_its_idempotency_key(stack, dataset):
    """A refusal that did nothing (404) releases the key: the corrected request with the same key goes through."""
    idem = str(uuid.uuid4())
    refused(stack, 404, body={"dataset": "v999999", "reason": "burn"}, idempotency_key=idem)
    retry = post(stack, {"dataset": f"v{dataset.version}"}, idempotency_key=idem)
    assert retry.status_code == 202, retry.text
    assert "Idempotent-Replayed" not in retry.headers


def test_an_unusable_idempotency_key_is_400(stack):
    refused(stack, 400, "Idempotency-Key", "1-255 characters", idempotency_key="k" * 256)


def submitted_run(stack, response) -> dict:
    """The run a 202 names: at once when the route submitted it; when the outbox timer (every 2 s here, as
    OUTBOX_SCHEDULE in Azure) claimed the request first, the answer is Queued and its Location (the request id)
    names the run once the timer has submitted it."""
    key = {"x-functions-key": stack.host_keys.function_keys["default"]}

    def follow() -> dict:
        followed = requests.get(stack.config.host_url + response.headers["Location"], headers=key, timeout=10)
        assert followed.status_code == 200, followed.text
        return followed.json()

    return wait_for(lambda: (lambda r: r if r["status"] != "Queued" else None)(follow()), timeout=60,
                    what="the queued request submitted by the outbox timer")


def test_a_retrain_in_flight_for_the_dataset_is_409_with_its_location(stack, dataset):
    first = post(stack, {"dataset": f"v{dataset.version}", "parameters": {"time_budget_s": 3}})
    assert first.status_code == 202, first.text
    run_id = submitted_run(stack, first)["run_id"]
    # A run stays in flight (Submitted, then Handling) until its completion is handled: well after this request.
    refused(stack, 409, "already in flight", run_id, body={"dataset": f"v{dataset.version}", "reason": "again"})
    again = post(stack, {"dataset": f"v{dataset.version}", "reason": "and again"})
    assert_problem(again, 409)
    assert again.headers["Location"] == f"/api/runs/{run_id}"
    assert stack.runs.get(run_id).status in ("Submitted", "Handling")
    assert len(pipeline_submissions(stack, dataset.version)) == 1


# ------------------------------------------------------------------------------ 429


def burst(stack, n: int, label: str, headers=None) -> list[requests.Response]:
    """`n` signed requests (distinct bodies, so none is a replay), each answered 404 if the rate allows it."""
    # fixed windows: keep the burst inside one (wait for the next window when this one ends in under 10 s)
    wait_for(lambda: RATE_WINDOW_S - time.time() % RATE_WINDOW_S >= 10, timeout=15, every=0.2,
             what="a rate window with at least 10 s left")
    return [post(stack, {"dataset": "v999999", "reason": f"{label} {i}"}, headers=headers(i) if headers else None)
            for i in range(n)]


def test_over_the_rate_a_caller_gets_429_with_retry_after(rate_stack):
    """RATE_LIMIT authentic requests per window per caller; the next is refused with Retry-After (seconds)."""
    allowed = burst(rate_stack, RATE_LIMIT, "burst")
    for response in allowed:
        assert_problem(response, 404)
    over, record = audited(rate_stack, lambda: post(rate_stack, {"dataset": "v999999", "reason": "one too many"}))
    assert_problem(over, 429, "too many requests", "retry after")
    retry_after = int(over.headers["Retry-After"])
    assert 1 <= retry_after <= RATE_WINDOW_S
    assert f"retry after {retry_after} s" in over.json()["detail"]
    assert_rejected(rate_stack, record, 429)


def test_only_authentic_requests_count_against_the_rate(rate_stack):
    """Unsigned requests are refused before the rate limiter, so they cannot use up a caller's allowance."""
    for i in range(RATE_LIMIT + 2):
        assert_problem(post(rate_stack, {"dataset": "v999999", "reason": f"unsigned {i}"}, signed=False), 401)
    for response in burst(rate_stack, RATE_LIMIT, "signed"):
        assert_problem(response, 404)


def test_a_caller_cannot_escape_the_rate_by_claiming_other_addresses(rate_stack):
    answers = burst(rate_stack, RATE_LIMIT + 1, "spoofed", headers=lambda i: {"X-Forwarded-For": f"198.51.100.{i}"})
    assert [a.status_code for a in answers] == [404] * RATE_LIMIT + [429]


# ------------------------------------------------------------------------------ across every answer


def test_every_refusal_left_a_rejected_audit_record_without_secrets(stack):
    """Every authenticated request the function saw has a finished audit record, and every refusal before
    authentication is in the callers' aggregate; none of them holds a secret."""
    refused(stack, 400, body=b"[]")
    wait_for(lambda: all(r.outcome != "in_progress" for r in stack.audit.list() if r.function == "retrain_http"),
             what="every webhook audit record finished")
    records = [r for r in stack.audit.list() if r.function == "retrain_http"]
    for record in records:
        status = record.data["status"]
        expected = {202: {"submitted", "duplicate", "queued", "superseded"}}.get(
            status, {"rejected"} if status < 500 else {"failed"})
        assert record.outcome in expected, (status, record.outcome, record.detail)
        text = json.dumps(record.to_dict())
        for name, value in secrets_of(stack).items():
            assert value not in text, f"audit record {record.id} carries the {name}"
        assert status not in (405, 413, 415) and not (status == 401 and record.outcome == "rejected"), \
            f"audit record {record.id}: a refusal before authentication ({status}) was audited"
    refused(stack, 401, "missing", signed=False)
    counts = rejections(stack)
    assert counts and {n["status"] for r in counts for n in r.reasons} <= set(PRE_AUTHENTICATION)
    for name, value in secrets_of(stack).items():
        assert value not in json.dumps([r.reasons for r in counts]), f"the refusal aggregate carries the {name}"
