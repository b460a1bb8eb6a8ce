"""The reference client for POST /api/retrain against a real HTTP server on 127.0.0.1: it signs the exact bytes it
sends, the server-side `verify` accepts them, retries keep the body and Idempotency-Key but re-sign, 429 waits for
Retry-After, problem+json is read, and neither the key nor the secret shows up anywhere but in headers."""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from local.processes import free_port
from shared.domain.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, replay_key, sign, verify
from tests.waiting import wait_for
from tools.cli.webhook import UsageError, coerce_parameter, trigger_parameters
from tools.webhook_client import (
    RetrainClient,
    RetrainClientError,
    encode_body,
    normalize_base_url,
    parse_retry_after,
)

KEY = "fk-" + secrets.token_urlsafe(32)
SECRET = "ws-" + secrets.token_urlsafe(32)
ACCEPTED = {"id": "r-1", "run_id": "r-1", "status": "Submitted", "dataset_version": 3, "reason": "nightly",
            "audit_id": "http-1"}


@pytest.fixture(scope="module")
def server():
    s = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    s.start()
    yield s
    s.clear()
    if s.is_running():
        s.stop()


class Host:
    """Answers POST /api/retrain from a script of responses and records what arrived."""

    def __init__(self, server: HTTPServer, *answers: Response | tuple[float, Response]):
        self.server = server
        self.answers = list(answers)
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server.clear()
        server.expect_request("/api/retrain", method="POST").respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        with self._lock:
            self.requests.append({"body": request.get_data(), "headers": dict(request.headers),
                                  "url": request.url, "query": request.query_string, "path": request.path})
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, tuple):
            delay, answer = answer
            time.sleep(delay)  # a server slower than the client's timeout: the slowness is what is under test
        return answer

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


def accepted(run_id: str = "r-1") -> Response:
    return Response(json.dumps({**ACCEPTED, "id": run_id, "run_id": run_id}), 202,
                    headers={"Location": f"/api/runs/{run_id}"}, content_type="application/json")


def problem(status: int, title: str, detail: str, headers: dict | None = None) -> Response:
    return Response(json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}), status,
                    headers=headers or {}, content_type="application/problem+json")


def client(base_url: str, **kwargs) -> RetrainClient:
    sleeps: list[float] = []
    c = RetrainClient(base_url, KEY, SECRET, sleep=sleeps.append, **kwargs)
    c.sleeps = sleeps
    return c


def header(request: dict, name: str) -> str | None:
    return next((v for k, v in request["headers"].items() if k.lower() == name.lower()), None)


def test_signs_the_exact_bytes_it_sends_and_the_server_verify_accepts_them(server):
    host = Host(server, accepted("r-42"))
    c = client(host.base_url)
    result = c.trigger("latest", parameters={"time_budget_s": 120, "exclude_columns": "duration"}, reason="nightly",
                       requested_by="ci")
    assert result.ok and result.status == 202 and result.attempts == 1
    assert result.run_id == "r-42" and result.status_text == "Submitted"
    assert result.location == f"{host.base_url}/api/runs/r-42"
    [got] = host.requests
    expected = encode_body("latest", {"time_budget_s": 120, "exclude_columns": "duration"}, "nightly", "ci")
    assert got["body"] == expected
    assert json.loads(got["body"]) == {"dataset": "latest", "parameters": {"time_budget_s": 120,
                                       "exclude_columns": "duration"}, "reason": "nightly", "requested_by": "ci"}
    ts = verify(SECRET, got["body"], header(got, SIGNATURE_HEADER), header(got, TIMESTAMP_HEADER), now=time.time())
    assert sign(SECRET, got["body"], ts)[SIGNATURE_HEADER] == header(got, SIGNATURE_HEADER)
    assert header(got, "x-functions-key") == KEY
    assert header(got, "Content-Type") == "application/json"
    assert uuid.UUID(header(got, "Idempotency-Key")).version == 4
    assert header(got, "Idempotency-Key") == result.idempotency_key
    assert got["path"] == "/api/retrain" and got["query"] == b""
    for value in (KEY, SECRET):
        assert value not in got["url"] and value.encode() not in got["body"]
        assert value not in repr(c) and value not in repr(result)


def test_absent_fields_are_left_out_and_a_given_idempotency_key_is_sent(server):
    host = Host(server, accepted())
    result = client(host.base_url).trigger("v3", idempotency_key="my-key-1")
    assert host.requests[0]["body"] == b'{"dataset":"v3"}'
    assert header(host.requests[0], "Idempotency-Key") == "my-key-1" == result.idempotency_key


def test_5xx_is_retried_with_the_same_body_and_key_but_a_new_signature_and_a_later_timestamp(server):
    host = Host(server, problem(503, "Service Unavailable", "busy"), Response("", 500), accepted())
    frozen = 1_767_225_600.0  # the clock does not move between attempts: timestamps must still increase
    c = client(host.base_url, clock=lambda: frozen)
    result = c.trigger("latest", reason="nightly")
    assert result.ok and result.attempts == 3
    assert c.sleeps == [0.5, 1.0]
    bodies = {r["body"] for r in host.requests}
    keys = {header(r, "Idempotency-Key") for r in host.requests}
    assert len(host.requests) == 3 and len(bodies) == 1 and keys == {result.idempotency_key}
    stamps = [verify(SECRET, r["body"], header(r, SIGNATURE_HEADER), header(r, TIMESTAMP_HEADER), now=frozen)
              for r in host.requests]
    assert stamps == [int(frozen), int(frozen) + 1, int(frozen) + 2]
    assert len({header(r, SIGNATURE_HEADER) for r in host.requests}) == 3
    assert len({replay_key(r["body"], ts) for r, ts in zip(host.requests, stamps, strict=True)}) == 3


def test_5xx_retries_end_with_the_last_answer(server):
    host = Host(server, problem(502, "Bad Gateway", "the pipeline endpoint did not accept the run: down"))
    c = client(host.base_url, retries=3)
    result = c.trigger("latest")
    assert not result.ok and result.status == 502 and result.attempts == 4 and len(host.requests) == 4
    assert c.sleeps == [0.5, 1.0, 2.0]
    assert result.is_problem and result.title == "Bad Gateway"


def test_a_timeout_is_retried_with_the_same_key_and_body(server):
    host = Host(server, (1.5, accepted("slow")), accepted("r-2"))
    c = client(host.base_url, timeout_s=0.3)
    result = c.trigger("latest")
    assert result.ok and result.run_id == "r-2" and result.attempts == 2
    wait_for(lambda: len(host.requests) >= 2, timeout=5, every=0.05, what="both requests at the server")
    assert len({r["body"] for r in host.requests}) == 1
    assert {header(r, "Idempotency-Key") for r in host.requests} == {result.idempotency_key}


def test_connection_errors_are_retried_then_reported_without_secrets():
    port = free_port()
    c = client(f"http://127.0.0.1:{port}", retries=2)
    with pytest.raises(RetrainClientError) as caught:
        c.trigger("latest", idempotency_key="k-1")
    message = str(caught.value)
    assert "cannot connect to" in message and f"127.0.0.1:{port}/api/retrain" in message
    assert caught.value.attempts == 3 and caught.value.idempotency_key == "k-1"
    assert c.sleeps == [0.5, 1.0]
    assert KEY not in message and SECRET not in message


def test_429_waits_for_retry_after_then_resends(server):
    host = Host(server, problem(429, "Too Many Requests", "slow down", {"Retry-After": "7"}), accepted())
    c = client(host.base_url)
    result = c.trigger("latest")
    assert result.ok and result.attempts == 2 and c.sleeps == [7.0]
    assert len({header(r, "Idempotency-Key") for r in host.requests}) == 1


def test_429_with_a_retry_after_beyond_the_cap_is_returned_not_waited_for(server):
    host = Host(server, problem(429, "Too Many Requests", "rate limited", {"Retry-After": "3600"}))
    c = client(host.base_url, max_retry_after_s=60)
    result = c.trigger("latest")
    assert result.status == 429 and result.attempts == 1 and c.sleeps == [] and len(host.requests) == 1
    assert result.retry_after == 3600 and result.detail == "rate limited"


def test_problem_json_is_read_and_4xx_is_not_retried(server):
    host = Host(server, problem(400, "Bad Request", "parameters.seed: must be an integer; got 'x'"))
    c = client(host.base_url)
    result = c.trigger("latest", parameters={"seed": "x"})
    assert not result.ok and result.status == 400 and result.attempts == 1 and c.sleeps == []
    assert result.is_problem and result.title == "Bad Request"
    assert result.detail == "parameters.seed: must be an integer; got 'x'"
    assert result.json()["status"] == 400


def test_an_empty_401_from_the_host_gets_a_hint(server):
    host = Host(server, Response(b"", 401))
    result = client(host.base_url).trigger("latest")
    assert result.status == 401 and result.title == "Unauthorized"
    assert "function key" in result.detail and KEY not in result.detail


def test_redirects_are_not_followed(server):
    host = Host(server, Response(b"", 307, headers={"Location": "https://elsewhere.example/api/retrain?x=1"}))
    result = client(host.base_url).trigger("latest")
    assert result.status == 307 and len(host.requests) == 1
    assert "https://elsewhere.example/api/retrain" in result.detail and "?x=1" not in result.detail


def test_the_base_url_refuses_keys_and_queries():
    with pytest.raises(ValueError) as caught:
        RetrainClient(f"https://app.azurewebsites.net/?code={KEY}", KEY, SECRET)
    assert KEY not in str(caught.value)
    with pytest.raises(ValueError):
        normalize_base_url("ftp://host")
    assert normalize_base_url(" http://127.0.0.1:7071/ ") == "http://127.0.0.1:7071"
    with pytest.raises(ValueError):
        RetrainClient("http://127.0.0.1:7071", "", SECRET)
    with pytest.raises(ValueError):
        RetrainClient("http://127.0.0.1:7071", KEY, "")


def test_retry_after_parses_seconds_and_http_dates():
    assert parse_retry_after("12", now=0) == 12
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=1_767_225_600) == 60
    assert parse_retry_after("soon", now=0) is None and parse_retry_after(None, now=0) is None


def test_cli_parameters_are_typed_as_the_pipeline_declares_them():
    assert coerce_parameter("time_budget_s", "120") == 120
    assert coerce_parameter("seed", "7") == 7
    assert coerce_parameter("exclude_columns", "duration, age") == "duration,age"
    assert coerce_parameter("primary_metric", "AUC_weighted") == "AUC_weighted"  # a string parameter stays a string
    assert coerce_parameter("experiment_name", "123") == 123  # the service's own: sent as given, refused by it
    assert coerce_parameter("unknown_flag", "true") is True  # unknown: JSON when it parses, and the service answers
    assert coerce_parameter("unknown_ratio", "0.25") == 0.25
    assert coerce_parameter("unknown_text", "hello") == "hello"
    assert coerce_parameter("unknown_nan", "NaN") == "NaN"
    assert coerce_parameter("dataset_version", "3") == 3  # reserved: sent as given, refused by the service
    with pytest.raises(UsageError, match="time_budget_s: must be an integer"):
        coerce_parameter("time_budget_s", "abc")
    merged = trigger_parameters('{"time_budget_s": 60, "evaluation_percent": 20}', ["time_budget_s=120"])
    assert merged == {"time_budget_s": 120, "evaluation_percent": 20}
    for bad in (("[1]", None), ("{", None), (None, ["novalue"]), (None, ["=3"])):
        with pytest.raises(UsageError):
            trigger_parameters(*bad)


def test_drift_check_signs_an_empty_body_and_is_sent_once(server):
    """POST /api/drift-check: the function key in a header, the signature over TIMESTAMP + "." + b"" (what the
    service verifies), no retry of a 409 (a check is running: its Location is shown)."""
    arrived: list[dict] = []

    def handle(request: Request) -> Response:
        arrived.append({"body": request.get_data(), "headers": dict(request.headers)})
        return Response(json.dumps({"type": "about:blank", "title": "Conflict", "status": 409,
                                    "detail": "a drift check is already running (check http-9)"}), status=409,
                        headers={"Location": "/api/runs/http-9"}, content_type="application/problem+json")

    server.clear()
    server.expect_request("/api/drift-check", method="POST").respond_with_handler(handle)
    client = RetrainClient(server.url_for(""), KEY, SECRET, retries=3, sleep=lambda _s: None)
    result = client.drift_check()
    assert result.status == 409 and len(arrived) == 1
    assert result.location.endswith("/api/runs/http-9") and "already running" in result.detail
    (request,) = arrived
    assert request["body"] == b"" and request["headers"]["X-Functions-Key"] == KEY
    verify(SECRET, b"", request["headers"][SIGNATURE_HEADER], request["headers"][TIMESTAMP_HEADER], now=time.time())
    assert KEY not in repr(client) and SECRET not in repr(client)
