"""shared/services/health.py: the pipeline check against a real HTTP server on loopback (pytest-httpserver), a
refused port and a server that never answers; the storage check with probes that succeed, raise and hang. What
fails is said in a word, never with a URL, host, account or the exception's text."""

from __future__ import annotations

import json
import socket
import threading

import pytest
import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseTimeoutError,
)

from local.processes import free_port
from shared.api import openapi
from shared.services import health
from tests.unit.test_openapi import validator

SECRET_URL = "https://secretacct.table.core.windows.net/runs?sig=TOPSECRETSIG"
PIPELINE_PATH = "/pipelines/v1.0/subscriptions/sub/PipelineRuns/PipelineSubmit/abc"


def ok_probe():
    return None


def failing_probe(exc: BaseException):
    def probe():
        raise exc
    return probe


def health_validator():
    return validator(openapi.document(), "Health")


def assert_no_leak(body: dict, *secrets: str) -> None:
    text = json.dumps(body)
    for secret in ("secretacct", "TOPSECRETSIG", "core.windows.net", "127.0.0.1", "localhost", "http", *secrets):
        if secret == "http":  # "http 503" is a reason; a URL is not
            assert "http:" not in text and "https:" not in text, text
        else:
            assert secret not in text, text


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


# the pipeline endpoint's reachability ------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [200, 302, 401, 404, 405])
def test_any_answer_below_500_means_reachable(httpserver, session, status):
    httpserver.expect_request(PIPELINE_PATH, method="HEAD").respond_with_data("", status=status,
                                                                             headers={"Location": "/elsewhere"})
    check = health.check_pipeline(httpserver.url_for(PIPELINE_PATH), session, timeout_s=2)
    assert check["ok"] is True and set(check) == {"ok", "ms"}
    assert isinstance(check["ms"], int) and check["ms"] >= 0
    assert len(httpserver.log) == 1  # one request, the redirect not followed


def test_the_probe_sends_no_credentials(httpserver, session, tmp_path, monkeypatch):
    """Not even a ~/.netrc entry for the host, which requests would otherwise add."""
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login user password hunter2\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    httpserver.expect_request(PIPELINE_PATH).respond_with_data("", status=401)
    assert health.check_pipeline(httpserver.url_for(PIPELINE_PATH), session)["ok"] is True
    request, _ = httpserver.log[0]
    assert "Authorization" not in request.headers
    assert request.method == "HEAD"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_means_not_serving(httpserver, session, status):
    httpserver.expect_request(PIPELINE_PATH).respond_with_data("upstream secretacct down", status=status)
    check = health.check_pipeline(httpserver.url_for(PIPELINE_PATH), session)
    assert check == {"ok": False, "ms": check["ms"], "detail": f"http {status}"}


def test_a_refused_port_is_unreachable(session):
    check = health.check_pipeline(f"http://127.0.0.1:{free_port()}{PIPELINE_PATH}", session)
    assert check["ok"] is False and check["detail"] == "unreachable"


def test_a_server_that_never_answers_is_a_timeout(session, silent_port):
    # how long it takes (about the 0.5 s timeout) is measured by bench/timings.py
    check = health.check_pipeline(f"http://127.0.0.1:{silent_port}{PIPELINE_PATH}", session, timeout_s=0.5)
    assert check["ok"] is False and check["detail"] == "timeout"
    assert isinstance(check["ms"], int) and check["ms"] > 0


@pytest.mark.parametrize("url", ["", "not a url", "ftp://example.org/x"])
def test_no_usable_url_is_not_configured(session, url):
    check = health.check_pipeline(url, session)
    assert (check["ok"], check["detail"]) == (False, "not configured")


# storage -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("exc", "detail"), [
    (ServiceRequestError(f"HTTPConnection(host='secretacct.table.core.windows.net'): refused {SECRET_URL}"),
     "unreachable"),
    (ServiceResponseTimeoutError(f"read timed out {SECRET_URL}"), "timeout"),
    (TimeoutError("timed out"), "timeout"),
    (ClientAuthenticationError(f"no token for {SECRET_URL}"), "unauthorized"),
    (ConnectionRefusedError(f"refused {SECRET_URL}"), "unreachable"),
    (RuntimeError(f"boom AccountKey=c2VjcmV0 {SECRET_URL}"), "error"),
    (ValueError(SECRET_URL), "error"),
])
def test_a_failing_storage_probe_says_why_in_a_word(exc, detail):
    check = health.check_storage(failing_probe(exc))
    assert check == {"ok": False, "ms": check["ms"], "detail": detail}
    assert_no_leak(check, "c2VjcmV0", "boom")


def test_an_http_error_from_storage_names_only_the_status():
    forbidden = HttpResponseError(message=f"forbidden {SECRET_URL}")
    forbidden.status_code = 403
    assert health.check_storage(failing_probe(forbidden))["detail"] == "unauthorized"
    busy = HttpResponseError(message=f"server busy {SECRET_URL}")
    busy.status_code = 503
    assert health.check_storage(failing_probe(busy))["detail"] == "http 503"


def test_the_timeout_is_found_behind_a_wrapping_error():
    try:
        try:
            raise TimeoutError("read timed out")
        except TimeoutError as inner:
            raise ServiceRequestError(f"wrapped {SECRET_URL}") from inner
    except ServiceRequestError as outer:
        assert health.reason(outer) == "timeout"


# the answer --------------------------------------------------------------------------------------------------------
def test_both_checks_pass_200_ok(httpserver, session):
    httpserver.expect_request(PIPELINE_PATH).respond_with_data("", status=405)
    status, body = health.check_health(storage_probe=ok_probe, pipeline_url=httpserver.url_for(PIPELINE_PATH),
                                       session=session)
    assert status == 200
    assert body["status"] == "ok" and set(body["checks"]) == {"storage", "pipeline"}
    assert all(c["ok"] is True and isinstance(c["ms"], int) for c in body["checks"].values())
    health_validator().validate(body)


def test_a_probe_that_raises_is_503_without_its_message(httpserver, session):
    httpserver.expect_request(PIPELINE_PATH).respond_with_data("", status=401)
    probe = failing_probe(RuntimeError(f"cannot reach {SECRET_URL} with AccountKey=c2VjcmV0"))
    status, body = health.check_health(storage_probe=probe, pipeline_url=httpserver.url_for(PIPELINE_PATH),
                                       session=session)
    assert status == 503
    assert body["status"] == "degraded"
    assert body["checks"]["storage"] == {"ok": False, "ms": body["checks"]["storage"]["ms"], "detail": "error"}
    assert body["checks"]["pipeline"]["ok"] is True
    health_validator().validate(body)
    assert_no_leak(body, "c2VjcmV0")


def test_an_unreachable_pipeline_is_503_without_its_url(session):
    port = free_port()
    status, body = health.check_health(storage_probe=ok_probe, pipeline_url=f"http://127.0.0.1:{port}/secretacct",
                                       session=session)
    assert status == 503 and body["checks"]["pipeline"]["detail"] == "unreachable"
    assert body["checks"]["storage"]["ok"] is True
    health_validator().validate(body)
    assert_no_leak(body, str(port))


def test_unavailable_is_a_valid_503():
    status, body = health.unavailable()
    assert status == 503 and body["status"] == "degraded"
    assert {c["detail"] for c in body["checks"].values()} == {"unavailable"}
    health_validator().validate(body)


# the checker: parallel, bounded, cached, never raises --------------------------------------------------------------
def test_the_checks_run_in_parallel_under_one_deadline(session, silent_port):
    release = threading.Event()

    def stuck_probe():
        release.wait(10)

    checker = health.HealthChecker(storage_probe=stuck_probe, pipeline_url=f"http://127.0.0.1:{silent_port}/x",
                                   session=session, timeout_s=5, deadline_s=0.5, cache_s=0)
    try:
        status, body = checker()
        assert not release.is_set()  # answered while the storage probe is still stuck (timings: bench/timings.py)
    finally:
        release.set()
    assert status == 503
    assert body["checks"]["storage"]["detail"] == "timeout" and body["checks"]["pipeline"]["detail"] == "timeout"
    health_validator().validate(body)


def test_an_answer_is_reused_for_cache_s(httpserver, session):
    httpserver.expect_request(PIPELINE_PATH).respond_with_data("", status=405)
    calls = []
    now = [100.0]
    checker = health.HealthChecker(storage_probe=lambda: calls.append(1),
                                   pipeline_url=httpserver.url_for(PIPELINE_PATH), session=session, cache_s=5,
                                   clock=lambda: now[0])
    first = checker()
    now[0] += 4.9
    assert checker() is first
    assert len(calls) == 1 and len(httpserver.log) == 1
    now[0] += 0.2
    assert checker()[0] == 200
    assert len(calls) == 2 and len(httpserver.log) == 2


def test_the_checker_never_raises(session, monkeypatch):
    def broken_check(probe):
        raise RuntimeError(f"bug with {SECRET_URL}")

    monkeypatch.setattr(health, "check_storage", broken_check)
    checker = health.HealthChecker(storage_probe=ok_probe, pipeline_url="", session=session, cache_s=0)
    status, body = checker()
    assert status == 503
    assert body["checks"]["storage"]["detail"] == "error"
    assert body["checks"]["pipeline"]["detail"] == "not configured"
    health_validator().validate(body)
    assert_no_leak(body)

    def no_threads(*args, **kwargs):
        raise RuntimeError("cannot schedule new futures after shutdown")

    monkeypatch.setattr(checker._pool, "submit", no_threads)
    status, body = checker()
    assert status == 503 and {c["detail"] for c in body["checks"].values()} == {"error"}
    health_validator().validate(body)
