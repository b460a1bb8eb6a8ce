"""The fault campaign's proxy (bench/fault_proxy.py) faults the submission of either pipeline kind and nothing else.

v2: the batch endpoint's invoke (`POST /jobs`) is faulted; the ARM job lookups and status GETs pass through
(the product's lookup before a resubmission must reach the endpoint). v1: `POST …/PipelineSubmit/…`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from bench.fault_endpoint import BatchEndpointKind, PublishedKind
from bench.fault_proxy import FaultProxy, FaultSchedule
from local.pipeline_endpoint import local_workspace_id, submit_url
from tests.waiting import wait_for

JOB_LOOKUP = f"{local_workspace_id()}/jobs/retrain-t1?api-version=2024-04-01"


def invoke_body(trigger_id: str) -> dict:
    """The documented invoke body (BatchEndpointPipelineClient.body's shape), camel-cased keys as azure-ai-ml."""
    return {"properties": {"inputData": {"trigger_id": {"jobInputType": "Literal", "value": trigger_id}},
                           "name": f"retrain-{trigger_id}", "properties": {"experimentName": "x"}}}


class Upstream:
    """A loopback pipeline endpoint that answers every call and remembers it."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                upstream.calls.append((self.command, self.path))
                name = ((body.get("properties") or {}).get("name")) or "run-1"
                data = json.dumps({"name": name, "Id": "v1-run", "properties": {"status": "NotStarted"}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream():
    server = Upstream()
    yield server
    server.close()


def proxy_for(upstream: Upstream, contract, fault: str, **kw) -> FaultProxy:
    return FaultProxy(upstream=upstream.url, schedule=FaultSchedule(1, {fault: 1}), client_timeout_s=0.3,
                      contract=contract, hold_extra_s=0.2, **kw).start()


def recorded(proxy: FaultProxy) -> list:
    """The proxy's events once the request's is in: it records an event after answering (its `finally`), so the
    client can hold the answer a moment before the event exists. Counts are updated last: waited on."""
    return wait_for(lambda: sum(proxy.counts.values()) and list(proxy.events), timeout=5, what="the proxy's event")


V2 = BatchEndpointKind("http://unused", "secret")
V1 = PublishedKind("http://unused", "secret")


def test_v2_invoke_answered_429_with_retry_after_is_not_forwarded(upstream):
    proxy = proxy_for(upstream, V2, "http_429")
    try:
        response = requests.post(f"{proxy.base_url}/jobs", json=invoke_body("t1"), timeout=5)
        assert response.status_code == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 3
        assert upstream.calls == []
        (event,) = recorded(proxy)
        assert (event.index, event.kind, event.trigger_id, event.retry_after_s) == (0, "http_429", "t1",
                                                                                    int(response.headers["Retry-After"]))
    finally:
        proxy.stop()


def test_v2_job_lookups_pass_through_whatever_the_schedule(upstream):
    proxy = proxy_for(upstream, V2, "http_500")
    try:
        response = requests.get(f"{proxy.base_url}{JOB_LOOKUP}", timeout=5)
        assert response.status_code == 200
        assert upstream.calls == [("GET", JOB_LOOKUP)]
        (event,) = recorded(proxy)
        assert (event.index, event.kind, event.lookup) == (-1, "forward", True)
        assert proxy.counts == {"get_forwarded": 1}
    finally:
        proxy.stop()


def test_v2_answer_lost_after_forwarding_records_the_started_job(upstream):
    proxy = proxy_for(upstream, V2, "lost_502")
    try:
        response = requests.post(f"{proxy.base_url}/jobs", json=invoke_body("t2"), timeout=5)
        assert response.status_code == 502
        assert upstream.calls == [("POST", "/jobs")]
        (event,) = recorded(proxy)
        assert (event.upstream_status, event.run_id, event.trigger_id) == (200, "retrain-t2", "t2")
    finally:
        proxy.stop()


def test_v2_answer_held_past_the_client_timeout_after_forwarding(upstream):
    proxy = proxy_for(upstream, V2, "timeout_forwarded")
    try:
        with pytest.raises(requests.Timeout):
            requests.post(f"{proxy.base_url}/jobs", json=invoke_body("t3"), timeout=0.3)
        assert upstream.calls == [("POST", "/jobs")]  # the job started; its answer goes nowhere
    finally:
        proxy.stop()


def test_v1_submit_is_faulted_and_v2_paths_are_not_submissions_for_it(upstream):
    proxy = proxy_for(upstream, V1, "http_503")
    try:
        url = submit_url(proxy.base_url)
        response = requests.post(url, json={"ParameterAssignments": {"trigger_id": "t4"}}, timeout=5)
        assert response.status_code == 503
        assert requests.post(f"{proxy.base_url}/jobs", json=invoke_body("t5"), timeout=5).status_code == 200
        wait_for(lambda: sum(proxy.counts.values()) == 2, timeout=5, what="both requests' events")
        assert [(e.index, e.trigger_id) for e in proxy.events] == [(0, "t4"), (-1, "")]
    finally:
        proxy.stop()


def test_the_trigger_id_is_read_from_the_documented_pascal_case_body_too():
    body = {"properties": {"InputData": {"trigger_id": {"JobInputType": "Literal", "Value": "t6"}}}}
    assert V2.trigger_id(json.dumps(body).encode()) == "t6"
    assert V2.trigger_id(json.dumps({"properties": {"name": "retrain-t7"}}).encode()) == "t7"
    assert V2.is_submit("POST", "/jobs") and not V2.is_submit("GET", "/jobs")
    assert not V2.is_submit("POST", f"{local_workspace_id()}/jobs/retrain-t1")
