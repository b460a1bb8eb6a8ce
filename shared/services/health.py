"""GET /api/health: do the app's dependencies answer? Storage (one cheap read) and the pipeline endpoint (any HTTP
answer from its URL).

Anonymous, so what it says is deliberately little: per check `ok`, the time it took (`ms`) and, when it failed, a
short generic reason ("unreachable", "timeout", "unauthorized", "http 503", ...). Never a URL, a host or account
name, a key, or an exception's text (those name hosts and accounts): the reasons come from a fixed vocabulary.

The checks take their collaborators (a storage probe callable, a URL and a requests session), so they run against
anything; `HealthChecker` runs them in parallel under one deadline, never raises, and keeps the answer for a few
seconds so that an anonymous caller cannot turn the endpoint into a stream of outbound requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.data.tables import TableClient

from shared.services.http_guard import JSON, HttpAnswer

log = logging.getLogger(__name__)

TIMEOUT_S = 3.0  # per check (connect and read)
CACHE_S = 5.0  # how long an answer is reused
CHECKS = ("storage", "pipeline")

Check = dict  # {"ok": bool, "ms": int, "detail": str (when not ok)}

_TIMEOUTS = (TimeoutError, requests.Timeout, ServiceRequestTimeoutError, ServiceResponseTimeoutError)
_UNREACHABLE = (requests.ConnectionError, ServiceRequestError, ServiceResponseError, ConnectionError)
_NOT_CONFIGURED = (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                   requests.exceptions.InvalidURL, requests.exceptions.URLRequired)


def _chain(exc: BaseException):
    """The exception and what caused it (azure-core keeps the transport's error in `inner_exception`)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(seen) < 8:
        seen.add(id(exc))
        yield exc
        exc = getattr(exc, "inner_exception", None) or exc.__cause__ or exc.__context__


def reason(exc: BaseException) -> str:
    """A short generic reason for a failed check, from a fixed vocabulary (never the exception's text)."""
    causes = list(_chain(exc))
    if any(isinstance(e, _TIMEOUTS) for e in causes):
        return "timeout"
    if isinstance(exc, _NOT_CONFIGURED):
        return "not configured"
    if isinstance(exc, ClientAuthenticationError):
        return "unauthorized"
    if isinstance(exc, HttpResponseError) and isinstance(exc.status_code, int):
        return "unauthorized" if exc.status_code in (401, 403) else f"http {exc.status_code}"
    if isinstance(exc, _UNREACHABLE):
        return "unreachable"
    return "error"


def _ms(started: float) -> int:
    return max(0, round((time.perf_counter() - started) * 1000))


def check_storage(probe: Callable[[], object]) -> Check:
    """`probe()` returning (anything) means storage answered; an exception means it did not."""
    started = time.perf_counter()
    try:
        probe()
    except Exception as exc:
        log.warning("health: the storage check failed (%s)", type(exc).__name__)
        return {"ok": False, "ms": _ms(started), "detail": reason(exc)}
    return {"ok": True, "ms": _ms(started)}


class _NoAuth(requests.auth.AuthBase):
    """Send no credentials: not the app's token, not a ~/.netrc entry requests would otherwise pick up."""

    def __call__(self, request):
        request.headers.pop("Authorization", None)
        return request


def check_pipeline(url: str, session: requests.Session, timeout_s: float = TIMEOUT_S) -> Check:
    """Reachability of the pipeline endpoint: one HEAD request, no credentials, redirects not followed. Any HTTP
    answer below 500 (401, 404 and 405 included: the URL only takes an authenticated POST) means it is reachable;
    a 5xx answer (a gateway's 502/503/504) means it is not serving."""
    started = time.perf_counter()
    if not url:
        return {"ok": False, "ms": 0, "detail": "not configured"}
    try:
        response = session.head(url, timeout=(timeout_s, timeout_s), allow_redirects=False, auth=_NoAuth())
        response.close()
    except Exception as exc:
        log.warning("health: the pipeline check failed (%s)", type(exc).__name__)
        return {"ok": False, "ms": _ms(started), "detail": reason(exc)}
    if response.status_code >= 500:
        return {"ok": False, "ms": _ms(started), "detail": f"http {response.status_code}"}
    return {"ok": True, "ms": _ms(started)}


def table_probe(table: TableClient, timeout_s: float = TIMEOUT_S) -> Callable[[], None]:
    """A storage probe on an azure.data.tables TableClient: a point read of an entity that need not exist (a 404 is
    storage answering), one try, short timeouts (the SDK's default retries would take tens of seconds)."""
    def probe() -> None:
        try:
            table.get_entity("health", "probe", retry_total=0, connection_timeout=timeout_s,
                             read_timeout=timeout_s)
        except ResourceNotFoundError:
            pass
    return probe


def answer(checks: dict[str, Check]) -> tuple[int, dict]:
    """200 `ok` when every check passed, else 503 `degraded`."""
    healthy = all(c.get("ok") is True for c in checks.values())
    return (200 if healthy else 503), {"status": "ok" if healthy else "degraded", "checks": checks}


def http_answer(result: tuple[int, dict]) -> HttpAnswer:
    """`GET /api/health`'s answer: the 503 body is the same Health document as the 200 (not a problem document),
    never cached."""
    status, body = result
    return HttpAnswer(status, body, {"Cache-Control": "no-store"}, mimetype=JSON)


def unavailable(detail: str = "unavailable") -> tuple[int, dict]:
    """The answer when the checks themselves cannot be set up (settings missing, no credential): 503."""
    return answer({name: {"ok": False, "ms": 0, "detail": detail} for name in CHECKS})


def check_health(*, storage_probe: Callable[[], object], pipeline_url: str, session: requests.Session,
                 timeout_s: float = TIMEOUT_S) -> tuple[int, dict]:
    """Both checks, one after the other (HealthChecker runs them in parallel under a deadline)."""
    return answer({"storage": check_storage(storage_probe),
                   "pipeline": check_pipeline(pipeline_url, session, timeout_s)})


class HealthChecker:
    """Runs the checks in parallel, answers within `deadline_s` whatever happens (a check still running by then is
    reported as a timeout), never raises, and reuses an answer for `cache_s` seconds."""

    def __init__(self, *, storage_probe: Callable[[], object], pipeline_url: str, session: requests.Session,
                 timeout_s: float = TIMEOUT_S, cache_s: float = CACHE_S, deadline_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._checks: dict[str, Callable[[], Check]] = {
            "storage": lambda: check_storage(storage_probe),
            "pipeline": lambda: check_pipeline(pipeline_url, session, timeout_s),
        }
        self._deadline_s = deadline_s if deadline_s is not None else timeout_s + 1.0
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, tuple[int, dict]] | None = None
        # A check still running at the deadline keeps its worker (until its own timeouts end it), not the caller.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health")

    def __call__(self) -> tuple[int, dict]:
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._cache_s:
                return self._cached[1]
            try:
                result = self._run()
            except Exception as exc:  # never raise: a 503, not a 500
                log.warning("health: the checks could not run (%s)", type(exc).__name__)
                result = unavailable("error")
            self._cached = (self._clock(), result)
            return result

    def _run(self) -> tuple[int, dict]:
        started = time.perf_counter()
        futures = {name: self._pool.submit(check) for name, check in self._checks.items()}
        end = time.monotonic() + self._deadline_s
        checks: dict[str, Check] = {}
        for name, future in futures.items():
            try:
                checks[name] = future.result(timeout=max(0.0, end - time.monotonic()))
            except FutureTimeout:
                checks[name] = {"ok": False, "ms": _ms(started), "detail": "timeout"}
            except Exception as exc:
                checks[name] = {"ok": False, "ms": _ms(started), "detail": reason(exc)}
        return answer(checks)
