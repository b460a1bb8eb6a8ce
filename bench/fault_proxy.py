"""A fault-injecting HTTP proxy for the pipeline endpoint (loopback only), used by bench/faults.py.

It sits between the Functions host (its PIPELINE_ENDPOINT_URL, and for v2 its AZUREML_ARM_URL, point here) and
the local pipeline endpoint. Every submission — which call that is depends on the pipeline kind
(bench/fault_endpoint.py: v2 `POST /jobs`, the batch endpoint's invoke; v1 `POST …/PipelineSubmit/…`) — is
answered by the next fault of a seeded schedule (call i always gets the same fault for a given seed); every other
call (v2 job lookups and status GETs, v1 run GETs, health) is forwarded untouched and recorded.

Faults (`KINDS`):
  forward            forwarded, answer passed back
  http_500/http_503  answered at once, not forwarded (Azure ML's error envelope)
  http_429           answered at once with Retry-After 1-3 s, not forwarded
  timeout_drop       held past the client's timeout, never forwarded (no run started)
  timeout_forwarded  forwarded at once (the run starts), the answer held past the client's timeout: a lost answer
  lost_502           forwarded at once (the run starts), answered 502: a lost answer the client sees as an error
and, when armed with `kill_on_next_submit(callback)`, the next POST calls `callback()` (bench/faults.py kills the
Functions host with SIGKILL there), is then forwarded (the run starts) and its answer goes nowhere.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from bench.fault_endpoint import SubmitContract

KINDS = ("forward", "http_500", "http_503", "http_429", "timeout_drop", "timeout_forwarded", "lost_502")
DEFAULT_WEIGHTS = {"forward": 40, "http_500": 9, "http_503": 9, "http_429": 12, "timeout_drop": 8,
                   "timeout_forwarded": 12, "lost_502": 10}
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host",
        "content-length"}


@dataclass
class Fault:
    kind: str
    retry_after_s: int = 0


class FaultSchedule:
    """Call i -> a fault, deterministic per seed: the first len(KINDS) calls are every kind once (shuffled), so a
    short campaign still sees each; later calls are drawn by weight."""

    def __init__(self, seed: int, weights: dict[str, int] | None = None, length: int = 2000):
        rng = random.Random(f"fault-schedule-{seed}")
        weights = weights or DEFAULT_WEIGHTS
        kinds = [k for k in KINDS if weights.get(k, 0) > 0]
        first = list(kinds)
        rng.shuffle(first)
        drawn = rng.choices(kinds, weights=[weights[k] for k in kinds], k=max(0, length - len(first)))
        self._faults = [Fault(k, rng.randint(1, 3) if k == "http_429" else 0) for k in first + drawn]

    def __getitem__(self, i: int) -> Fault:
        return self._faults[i] if i < len(self._faults) else Fault("forward")


@dataclass
class ProxyEvent:
    at: float
    index: int  # submit call number (-1 for any other call)
    method: str
    path: str
    kind: str
    trigger_id: str = ""
    upstream_status: int | None = None
    run_id: str = ""
    client_gone: bool = False
    retry_after_s: int = 0  # the Retry-After this answer carried (http_429)
    lookup: bool = False  # a run lookup (bench/fault_endpoint.py: the kind's is_lookup)


@dataclass
class FaultProxy:
    upstream: str  # http://127.0.0.1:PORT of the pipeline endpoint
    schedule: FaultSchedule
    client_timeout_s: float
    contract: SubmitContract  # which call is a submission, its trigger id, its answer's run
    port: int = 0
    hold_extra_s: float = 1.5  # how far past the client's timeout a held answer is sent
    events: list[ProxyEvent] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._submits = 0
        self._kill: tuple[object, threading.Event] | None = None
        parts = urlsplit(self.upstream)
        self._up_host, self._up_port = parts.hostname, parts.port
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                proxy._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                proxy._handle(self)

            def do_HEAD(self) -> None:  # noqa: N802
                proxy._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def kill_on_next_submit(self, callback) -> threading.Event:
        """The next POST submission calls `callback()` before it is forwarded; the event is set afterwards."""
        done = threading.Event()
        with self._lock:
            self._kill = (callback, done)
        return done

    def disarm(self) -> None:
        with self._lock:
            self._kill = None

    # ---------------------------------------------------------------------------------------------------------
    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        conn = http.client.HTTPConnection(self._up_host, self._up_port, timeout=60)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        method, path = h.command, h.path
        submit = self.contract.is_submit(method, path)
        with self._lock:
            if submit:
                index = self._submits
                self._submits += 1
                fault = self.schedule[index]
                kill, self._kill = self._kill, None
            else:
                index, fault, kill = -1, Fault("forward"), None
        event = ProxyEvent(at=time.time(), index=index, method=method, path=path, kind=fault.kind,
                           retry_after_s=fault.retry_after_s if kill is None else 0,
                           lookup=self.contract.is_lookup(method, path))
        if submit:
            event.trigger_id = self.contract.trigger_id(body)
        try:
            if kill is not None:
                callback, done = kill
                event.kind = "host_killed_mid_submit"
                try:
                    callback()
                finally:
                    done.set()
                self._relay(h, event, method, path, headers, body)
            elif fault.kind == "forward":
                self._relay(h, event, method, path, headers, body)
            elif fault.kind in ("http_500", "http_503", "http_429"):
                status = int(fault.kind[5:])
                extra = {"Retry-After": str(fault.retry_after_s)} if status == 429 else {}
                code = {500: "InternalServerError", 503: "ServiceUnavailable", 429: "TooManyRequests"}[status]
                self._reply(h, event, status, {"error": {"code": code, "message": f"injected {status}"}}, extra)
            elif fault.kind == "timeout_drop":
                time.sleep(self.client_timeout_s + self.hold_extra_s)
                self._reply(h, event, 504, {"error": {"code": "GatewayTimeout", "message": "injected delay"}})
            elif fault.kind == "timeout_forwarded":
                status, up_headers, data = self._forward(method, path, headers, body)
                self._note_upstream(event, status, data)
                time.sleep(self.client_timeout_s + self.hold_extra_s)
                self._send(h, event, status, up_headers, data)
            elif fault.kind == "lost_502":
                status, _, data = self._forward(method, path, headers, body)
                self._note_upstream(event, status, data)
                self._reply(h, event, 502, {"error": {"code": "BadGateway", "message": "injected: answer lost"}})
        except Exception as exc:  # the upstream is down, or the client went away
            event.client_gone = True
            if event.upstream_status is None and not isinstance(exc, (BrokenPipeError, ConnectionResetError)):
                try:
                    self._reply(h, event, 502, {"error": {"code": "BadGateway", "message": type(exc).__name__}})
                except Exception:  # noqa: S110 - the client is gone: nobody to tell
                    pass
        finally:
            with self._lock:
                self.events.append(event)
                if submit:
                    self.counts[event.kind] += 1
                else:
                    self.counts[f"{method.lower()}_forwarded"] += 1

    def _relay(self, h, event: ProxyEvent, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        status, up_headers, data = self._forward(method, path, headers, body)
        self._note_upstream(event, status, data)
        self._send(h, event, status, up_headers, data)

    def _note_upstream(self, event: ProxyEvent, status: int, data: bytes) -> None:
        event.upstream_status = status
        if event.index >= 0 and status < 300:
            event.run_id = self.contract.run_id(data)

    def _reply(self, h, event: ProxyEvent, status: int, payload: dict, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        headers = [("Content-Type", "application/json"), *(extra or {}).items()]
        self._send(h, event, status, headers, data)

    @staticmethod
    def _send(h, event: ProxyEvent, status: int, headers: list, data: bytes) -> None:
        try:
            h.send_response(status)
            for key, value in headers:
                if key.lower() not in _HOP and key.lower() not in ("date", "server"):
                    h.send_header(key, value)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(data)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            event.client_gone = True
