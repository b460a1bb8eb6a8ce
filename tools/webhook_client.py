"""Reference client for `POST /api/retrain`: what `retrain trigger` uses and what the README's example mirrors.

    from tools.webhook_client import RetrainClient

    client = RetrainClient("http://127.0.0.1:7071", function_key, webhook_secret)
    result = client.trigger("latest", parameters={"time_budget_s": 120}, reason="nightly", requested_by="ci")
    if result.ok:
        print(result.run_id, result.status_text, result.location)
    else:
        print(result.status, result.title, result.detail)

The contract (shared/api/openapi.py, shared/domain/webhook_signature.py):

- the body is serialized once; those exact bytes are signed (`X-Retrain-Timestamp`, `X-Retrain-Signature`) and
  sent, with the function key in the `x-functions-key` header (never `?code=` in the URL);
- every request carries an `Idempotency-Key` (a uuid4 unless the caller gives one), so it is safe to retry: a
  network error, a timeout or a 5xx is retried (default 3 times, exponential backoff), and a 429 after its
  `Retry-After` when that is within `max_retry_after_s`; each attempt sends the same body and the same key, signed
  again with a fresh timestamp (strictly later than the previous attempt's, so the server's replay guard never
  takes a retry for a replay);
- redirects are not followed (they would carry the key to another address); a 3xx is answered as it came.

`POST /api/drift-check` is signed the same way (`client.drift_check()`): an empty body, signed as
TIMESTAMP + "." + b"" (the check takes no parameters). It is sent once, not retried: a 409 means a check is
already running (`result.location` shows it), a 429 says when to ask again.

Neither the function key nor the webhook secret appears in a URL, an exception message or a repr.
"""

from __future__ import annotations

import email.utils
import http
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from requests.structures import CaseInsensitiveDict

from shared.domain.webhook_signature import sign

RETRAIN_PATH = "/api/retrain"
DRIFT_CHECK_PATH = "/api/drift-check"
IDEMPOTENCY_HEADER = "Idempotency-Key"
FUNCTION_KEY_HEADER = "x-functions-key"
USER_AGENT = "azureml-retrain-client/0.1"
PROBLEM_JSON = "application/problem+json"


class RetrainClientError(RuntimeError):
    """No answer from the service after every retry (connection refused, timeout, ...); never contains secrets.
    Retry later with the same `idempotency_key` so the service can tell a repeat from a new request."""

    def __init__(self, message: str, *, idempotency_key: str | None = None, attempts: int = 0):
        super().__init__(message)
        self.idempotency_key = idempotency_key
        self.attempts = attempts


def display_url(url: str) -> str:
    """`url` without user info, query or fragment: safe to print."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def normalize_base_url(base_url: str) -> str:
    """`http(s)://host[:port][/prefix]`, without a trailing slash; refuses a query, a fragment or user info (the
    function key goes in a header, never in the URL)."""
    text = (base_url or "").strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base URL must look like http://127.0.0.1:7071 or https://APP.azurewebsites.net, got "
                         f"{display_url(text) or 'nothing'!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("base URL must not carry a query, a fragment or credentials: give the function key "
                         f"separately (it is sent in the {FUNCTION_KEY_HEADER} header); got {display_url(text)!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"base URL has an invalid port: {display_url(text)!r}") from None
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def encode_body(dataset: str | int, parameters: Mapping[str, Any] | None = None, reason: str | None = None,
                requested_by: str | None = None) -> bytes:
    """The request body, compact UTF-8 JSON; absent fields are left out."""
    if dataset is None or dataset == "":
        raise ValueError("dataset is required: 'latest', a version number (3 or 'v3') or a blob URI")
    body: dict[str, Any] = {"dataset": str(dataset)}  # the contract takes strings: 3 -> "3"
    if parameters:
        body["parameters"] = dict(parameters)
    if reason is not None:
        body["reason"] = reason
    if requested_by is not None:
        body["requested_by"] = requested_by
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class TriggerResult:
    """The service's answer to the last attempt."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    content: bytes = field(repr=False)
    idempotency_key: str
    attempts: int
    url: str  # base URL + path, no query

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    @property
    def is_problem(self) -> bool:
        return self.content_type == PROBLEM_JSON

    def json(self) -> Any:
        """The body as JSON; None when it is empty or not JSON."""
        if not self.content:
            return None
        try:
            return json.loads(self.content)
        except (ValueError, UnicodeDecodeError):
            return None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def run_id(self) -> str | None:
        body = self.json()
        if isinstance(body, dict):
            value = body.get("run_id") or body.get("id")
            return str(value) if value else None
        return None

    @property
    def status_text(self) -> str | None:
        body = self.json()
        return str(body["status"]) if isinstance(body, dict) and isinstance(body.get("status"), str) else None

    @property
    def location(self) -> str | None:
        """The `Location` header as an absolute URL without query (it names the run, never a key)."""
        value = self.headers.get("Location")
        return display_url(urljoin(self.url, value)) if value else None

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"), now=time.time())

    @property
    def title(self) -> str:
        body = self.json()
        if isinstance(body, dict) and isinstance(body.get("title"), str) and body["title"]:
            return body["title"]
        try:
            return http.HTTPStatus(self.status).phrase
        except ValueError:
            return "Error"

    @property
    def detail(self) -> str:
        """What was wrong: the problem's `detail`, else a hint for the usual empty answers."""
        body = self.json()
        if isinstance(body, dict) and body.get("detail") not in (None, ""):
            return str(body["detail"])
        if self.status == 401:
            return ("the function key or the request signature was refused: check the function key (sent as "
                    f"{FUNCTION_KEY_HEADER}) and the webhook secret")
        if 300 <= self.status < 400:
            moved = self.location
            return (f"the service redirected to {moved}; redirects are not followed (they would carry the key): "
                    "use that address as the base URL") if moved else "the service answered with a redirect"
        text = " ".join(self.text.split())
        return text[:300] if text else "(no body)"


class RetrainClient:
    """Signs and sends `POST {base_url}/api/retrain`; see the module docstring for the contract."""

    def __init__(self, base_url: str, function_key: str, webhook_secret: str,
                 session: requests.Session | None = None, *, timeout_s: float = 30.0, retries: int = 3,
                 backoff_s: float = 0.5, max_backoff_s: float = 8.0, max_retry_after_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time):
        if not function_key:
            raise ValueError("the function key is empty")
        if not webhook_secret:
            raise ValueError("the webhook secret is empty")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.base_url = normalize_base_url(base_url)
        self._function_key = function_key
        self._webhook_secret = webhook_secret
        self._session = session or requests.Session()
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self._sleep = sleep
        self._clock = clock

    def __repr__(self) -> str:  # never the key or the secret
        return f"RetrainClient({display_url(self.base_url)!r}, function_key=***, webhook_secret=***)"

    @property
    def url(self) -> str:
        return self.base_url + RETRAIN_PATH

    def trigger(self, dataset: str | int, parameters: Mapping[str, Any] | None = None, reason: str | None = None,
                requested_by: str | None = None, idempotency_key: str | None = None) -> TriggerResult:
        """Ask for a retrain. Returns the answer (202 when submitted; any 4xx/5xx too, see `.ok`); raises
        `RetrainClientError` when no attempt got an answer."""
        return self.send(encode_body(dataset, parameters, reason, requested_by), idempotency_key=idempotency_key)

    def send(self, body: bytes, *, idempotency_key: str | None = None) -> TriggerResult:
        """Send already-serialized body bytes (signed exactly as given), with retries."""
        key = idempotency_key or str(uuid.uuid4())
        shown = display_url(self.url)
        last_ts: int | None = None
        failure = ""
        attempts = 0
        for attempt in range(self.retries + 1):
            attempts = attempt + 1
            ts = int(self._clock())
            if last_ts is not None and ts <= last_ts:
                ts = last_ts + 1  # a retry is a new message: the replay guard would refuse the same timestamp
            last_ts = ts
            headers = {
                "Content-Type": "application/json",
                "Accept": f"application/json, {PROBLEM_JSON}",
                "User-Agent": USER_AGENT,
                FUNCTION_KEY_HEADER: self._function_key,
                IDEMPOTENCY_HEADER: key,
                **sign(self._webhook_secret, body, ts),
            }
            try:
                response = self._session.post(self.url, data=body, headers=headers, timeout=self.timeout_s,
                                              allow_redirects=False)
            except requests.Timeout:
                failure = f"no answer from {shown} within {self.timeout_s:g} s"
            except requests.ConnectionError as exc:
                failure = f"cannot connect to {shown} ({_reason(exc)})"
            except requests.RequestException as exc:
                raise RetrainClientError(f"POST {shown} failed: {type(exc).__name__}", idempotency_key=key,
                                         attempts=attempts) from None
            else:
                result = TriggerResult(response.status_code, CaseInsensitiveDict(response.headers), response.content,
                                       key, attempts, self.url)
                if attempt >= self.retries:
                    return result
                if result.status == 429:
                    wait = parse_retry_after(result.headers.get("Retry-After"), now=self._clock())
                    if wait is None:
                        wait = self._backoff(attempt)
                    if wait > self.max_retry_after_s:
                        return result  # the caller decides whether to wait that long
                    self._sleep(wait)
                    continue
                if result.status >= 500:
                    self._sleep(self._backoff(attempt))
                    continue
                return result
            if attempt < self.retries:
                self._sleep(self._backoff(attempt))
        raise RetrainClientError(f"{failure}; gave up after {attempts} attempt{'s' if attempts != 1 else ''}",
                                 idempotency_key=key, attempts=attempts)

    def drift_check(self) -> TriggerResult:
        """Sign and send `POST {base_url}/api/drift-check` with an empty body, once. Returns the answer (200 with
        the verdict, 202 when a job profiles a large window, 409 while another check runs, 4xx/5xx); raises
        `RetrainClientError` when there was no answer."""
        body = b""
        url = self.base_url + DRIFT_CHECK_PATH
        shown = display_url(url)
        headers = {"Accept": f"application/json, {PROBLEM_JSON}", "User-Agent": USER_AGENT,
                   FUNCTION_KEY_HEADER: self._function_key, **sign(self._webhook_secret, body, int(self._clock()))}
        try:
            response = self._session.post(url, data=body, headers=headers, timeout=max(self.timeout_s, 300.0),
                                          allow_redirects=False)
        except requests.Timeout:
            raise RetrainClientError(f"no answer from {shown} (the check may still be running: see "
                                     "`retrain status`)") from None
        except requests.ConnectionError as exc:
            raise RetrainClientError(f"cannot connect to {shown} ({_reason(exc)})") from None
        except requests.RequestException as exc:
            raise RetrainClientError(f"POST {shown} failed: {type(exc).__name__}") from None
        return TriggerResult(response.status_code, CaseInsensitiveDict(response.headers), response.content, "", 1,
                             url)

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_s * 2**attempt, self.max_backoff_s)


def _reason(exc: requests.ConnectionError) -> str:
    """A short cause without the exception's text (which repeats the URL and pool internals)."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "nodename nor servname",
                   "Temporary failure in name resolution", "Connection reset", "Remote end closed",
                   "certificate verify failed", "No route to host", "Network is unreachable"):
        if marker.lower() in text.lower():
            return marker.lower()
    return type(exc).__name__
