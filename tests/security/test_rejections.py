"""Black box, against the running local stack: refusals are cheap and `POST /api/drift-check` needs a signature.

Each test calls from a loopback address of its own (127.0.0.x as the source of the TCP connection; the host
passes the peer address on as the last X-Forwarded-For entry, which is what the service counts per caller), so one
test's refusals never throttle another's.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from local.processes import PROJECT_ROOT
from shared.adapters import storage
from shared.adapters.webhook_state import RejectionLog, SingleFlight
from shared.domain.records import AuditRecord, new_id
from shared.domain.webhook_signature import sign
from shared.services.http_guard import HOST_BODY_LIMIT
from shared.settings import Settings
from tests.e2e.api_stack import start_api_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

REJECT_LIMIT = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_api_stack(tmp_path_factory.mktemp("rejections-stack"), REJECT_LIMIT=str(REJECT_LIMIT),
                        WEBHOOK_RATE_LIMIT="100000", DRIFT_HTTP_RATE_LIMIT="100000")
    yield s
    s.stop()


_next_address = iter(range(2, 250))


@pytest.fixture
def caller():
    """A loopback source address no other test uses."""
    return f"127.0.0.{next(_next_address)}"


def table(stack):
    settings = Settings(storage_connection=stack.config.connection_string)
    return storage.ensure_table(storage.table_service(settings), settings.webhook_table)


def call(stack, caller: str, method: str, path: str, body: bytes = b"", headers: dict | None = None,
         key: bool = True):
    """One request from `caller`; returns (status, headers, parsed JSON body or None)."""
    host, port = stack.config.host_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60, source_address=(caller, 0))
    sent = dict(headers or {})
    if key:
        sent["x-functions-key"] = stack.host_keys.function_keys["default"]
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        raw = response.read()
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, doc
    finally:
        conn.close()


def drift(stack, caller, body=b"", headers=None, **kwargs):
    return call(stack, caller, "POST", "/api/drift-check", body, headers, **kwargs)


_signed: set[tuple[bytes, int]] = set()


def signed(stack, body=b"", secret=None, at=None):
    """Signature headers; the same body signed in the same second is the same message (a replay), so each call
    takes the newest second not yet used for this body (going back at most the tolerance's first minute)."""
    if at is None:
        at = next(t for t in range(int(time.time()), int(time.time()) - 60, -1) if (body, t) not in _signed)
        _signed.add((body, at))
    return sign(secret or stack.secrets["webhook_secret"], body, at)


def not_at_a_minute_end():
    """The throttle counts per minute: a burst must not straddle two."""
    return time.time() % 60 < 40


# ------------------------------------------------------------------------------ the flood


def test_a_flood_of_key_only_unsigned_requests_is_throttled_and_leaves_the_audit_as_it_was(stack, caller):
    wait_for(not_at_a_minute_end, timeout=30, what="the start of a minute")
    audit_before = len(stack.audit.list())
    answers = [call(stack, caller, "POST", "/api/retrain", json.dumps({"dataset": "latest", "n": i}).encode(),
                    {"Content-Type": "application/json"}) for i in range(40)]
    statuses = [status for status, _, _ in answers]
    assert statuses == [401] * (REJECT_LIMIT + 1) + [429] * (40 - REJECT_LIMIT - 1), statuses
    for _, headers, problem in answers[REJECT_LIMIT + 1:]:
        assert 1 <= int(headers["retry-after"]) <= 60
        assert headers["content-type"].startswith("application/problem+json") and problem["status"] == 429
        assert f"more than {REJECT_LIMIT}" in problem["detail"]
    assert len(stack.audit.list()) <= audit_before + 2  # a flood does not grow the audit
    rows = [r for r in RejectionLog(table(stack)).list(50) if r.caller == caller]
    assert sum(r.count for r in rows) == REJECT_LIMIT + 1  # the throttled requests wrote nothing
    assert all(n["status"] == 401 and n["route"] == "/api/retrain" for r in rows for n in r.reasons)
    # an operator sees the flood: `retrain rejections --json` lists this caller's minute with its count and reasons
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAIN_") and k != "AzureWebJobsStorage"}
    listed = subprocess.run([sys.executable, "-m", "tools.cli", "rejections", "--json"], cwd=PROJECT_ROOT,
                            env={**env, "RETRAIN_LOCAL_DIR": str(stack.config.local_dir)}, capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    mine = [json.loads(line) for line in listed.stdout.splitlines() if json.loads(line)["caller"] == caller]
    assert sum(row["count"] for row in mine) == REJECT_LIMIT + 1 and mine[0]["reasons"][-1]["status"] == 401
    # another caller is not affected by this one's flood
    other = f"127.0.0.{next(_next_address)}"
    assert call(stack, other, "POST", "/api/retrain", b"{}", {"Content-Type": "application/json"})[0] == 401


# ------------------------------------------------------------------------------ size, before the body is read


def head_only(stack, caller: str, path: str, length: int) -> bytes:
    """Send the request line and headers announcing `length` bytes, never the body; return the first bytes of the
    answer (which must come anyway)."""
    host, port = stack.config.host_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30, source_address=(caller, 0)) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                      f"x-functions-key: {stack.host_keys.function_keys['default']}\r\n"
                      f"Content-Length: {length}\r\n\r\n").encode())
        return sock.recv(200)


@pytest.mark.parametrize("path", ["/api/retrain", "/api/drift-check"])
def test_a_content_length_over_the_cap_is_413_without_the_body_being_read(stack, caller, path):
    answer = head_only(stack, caller, path, 100 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    answer = head_only(stack, caller, path, HOST_BODY_LIMIT + 1)
    assert answer.startswith(b"HTTP/1.1 413"), answer


def test_a_chunked_body_is_cut_off_at_the_cap_while_streaming(stack, caller):
    host, port = stack.config.host_url.removeprefix("http://").split(":")
    chunk = b"x" * 65536
    with socket.create_connection((host, int(port)), timeout=30, source_address=(caller, 0)) as sock:
        sock.sendall((f"POST /api/retrain HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                      f"x-functions-key: {stack.host_keys.function_keys['default']}\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n").encode())
        sent = 0
        try:
            while sent <= 4 * HOST_BODY_LIMIT:  # far more than the cap, unless the host stops reading first
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
        except OSError:
            pass  # the host answered and closed the connection
        answer = sock.recv(200)
    assert answer.startswith(b"HTTP/1.1 413"), answer


# ------------------------------------------------------------------------------ POST /api/drift-check


def test_a_drift_check_with_only_the_function_key_is_401(stack, caller):
    status, headers, problem = drift(stack, caller)
    assert status == 401 and headers["content-type"].startswith("application/problem+json")
    assert "missing X-Retrain-Signature" in problem["detail"] and problem["instance"] == "/api/drift-check"


def test_a_badly_signed_drift_check_is_401(stack, caller):
    status, _, problem = drift(stack, caller, headers=signed(stack, secret="not-the-webhook-secret"))
    assert status == 401 and "does not match" in problem["detail"]
    status, _, problem = drift(stack, caller, headers=signed(stack, at=int(time.time()) - 400))
    assert status == 401 and "old" in problem["detail"]


def test_a_replayed_drift_check_is_401(stack, caller):
    headers = signed(stack)
    status, _, first = drift(stack, caller, headers=headers)
    assert status == 200, first
    assert set(first) == {"audit_id", "outcome", "detail", "run_id", "drift", "report", "job"}
    status, _, problem = drift(stack, caller, headers=headers)
    assert status == 401 and "replay" in problem["detail"]


def test_a_drift_check_while_another_runs_is_409_with_its_location(stack, caller):
    """Another instance's check holds the lease (a row in the webhook table): this one must not run."""
    running = AuditRecord(id=new_id("http-"), trigger="http", function="drift_http", started_at=time.time(),
                          source="POST /api/drift-check")
    stack.audit.save(running)
    flight = SingleFlight(table(stack), "drift-check", lease_s=600)
    assert flight.acquire(running.id, time.time(), location=f"/api/runs/{running.id}").acquired
    try:
        status, headers, problem = drift(stack, caller, headers=signed(stack))
        assert status == 409, problem
        assert headers["location"] == f"/api/runs/{running.id}" and running.id in problem["detail"]
        shown = call(stack, caller, "GET", headers["location"])
        assert shown[0] == 200 and shown[2]["status"] == "Running" and shown[2]["audit_id"] == running.id
    finally:
        flight.release(running.id)
    assert drift(stack, caller, headers=signed(stack, body=b"{}"), body=b"{}")[0] == 200  # free again


def test_concurrent_drift_checks_never_overlap(stack, caller):
    """Six signed checks at once: each is answered 200 or 409 (with the running check's Location), and the checks
    that ran did so one after the other."""
    started = time.time()
    answers: list = []

    requests_ = [(body, signed(stack, body=body)) for body in (b"", b"{}") * 3]  # signed before the threads start

    def one(body: bytes, headers: dict):
        answers.append(drift(stack, caller, body=body, headers=headers))

    threads = [threading.Thread(target=one, args=r) for r in requests_]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted({status for status, _, _ in answers}) in ([200], [200, 409]), [a[0] for a in answers]
    for status, headers, _ in answers:
        if status == 409:
            assert headers["location"].startswith("/api/runs/http-")
    ran = sorted((r for r in stack.audit.list(limit=200) if r.function == "drift_http" and r.started_at >= started
                  and r.outcome != "rejected"), key=lambda r: r.started_at)
    assert len(ran) == sum(status == 200 for status, _, _ in answers)
    for earlier, later in zip(ran, ran[1:], strict=False):
        assert earlier.finished_at is not None and earlier.finished_at <= later.started_at, \
            (earlier.id, later.id)


def test_what_a_caller_sends_to_the_drift_check_is_not_a_parameter(stack, caller):
    body = json.dumps({"window_s": 1, "nonce": uuid.uuid4().hex}).encode()
    status, _, problem = drift(stack, caller, body=body, headers=signed(stack, body=body))
    assert status == 400 and "no parameters" in problem["detail"]
