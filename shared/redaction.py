"""One place that knows what a secret looks like, so no log line, span, error or printed URL carries one.

Every logger, exporter and error path masks text through `redact()`:

- the VALUES of the secret settings named once in `SECRET_SETTINGS` (registered from the environment at
  start-up by `register_environment()`), and values registered at run time with `register()` (the local host's
  function/master/system keys, an online endpoint's keys read with get_keys, tokens a credential handed out);
- storage connection-string secrets (`AccountKey=`, `SharedAccessKey=`, `SharedAccessSignature=`,
  `InstrumentationKey=`), Functions keys (`code=` in query strings, `x-functions-key:` headers), SAS signatures
  (`sig=`: the only SAS query parameter that is a secret; `sv`, `se`, `sp`... describe the token and stay
  readable so an expired SAS can still be diagnosed), bearer/basic tokens, JWTs, and `key=` / `token=` /
  `secret=` / `password=` style pairs and JSON fields such as `"primaryKey": "..."`.

Structured attributes (span attributes, JSON trees) are masked by key name with `is_sensitive()`.
`install_logging()` makes every `logging` record of the process (root logger, the Functions worker's, App
Insights' log handler) carry redacted text, whatever handler formats it.

Plain Python, no Azure import: the domain, services, adapters, triggers, the CLI and the local stack use it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 8  # shorter registered values would mask ordinary words; real keys are 32+ characters

# The settings whose value is a secret, declared once. A connection string or URL registers the secrets it
# embeds (its account key / SAS / `code=`) as well as the whole value.
SECRET_SETTINGS = (
    "WEBHOOK_SECRET", "WEBHOOK_SECRET_PREVIOUS", "SCORING_KEY", "SCORING_ADMIN_KEY", "LOCAL_PIPELINE_TOKEN",
    "AzureWebJobsStorage", "INFERENCE_STORAGE", "APPLICATIONINSIGHTS_CONNECTION_STRING", "EVENTGRID_WEBHOOK_URL",
    "RETRAIN_FUNCTION_KEY", "RETRAIN_WEBHOOK_SECRET", "AZURE_CLIENT_SECRET",
)

# Normalised (lower case, letters and digits only) key fragments that name a secret in structured attributes.
SENSITIVE_KEY_PARTS = ("key", "token", "secret", "password", "passwd", "pwd", "authorization", "connectionstring",
                       "credential", "signature", "cookie", "sas")
# Query parameters whose value is a secret: Functions keys and SAS signatures.
SENSITIVE_QUERY_PARAMS = frozenset({"code", "sig", "signature", "key", "token", "access_token", "client_secret",
                                    "password", "secret", "api-key", "api_key", "apikey", "subscription-key"})

_FIELDS = (r"InstrumentationKey|AccountKey|SharedAccessKey|SharedAccessSignature|sig|signature|key|code|password|"
           r"pwd|secret|token|access_token|client_secret|api[_-]?key")
# name=value pairs: connection strings (values end at `;`) and query strings (values end at `&`).
_PAIR = re.compile(rf"(?i)(?<![\w-])({_FIELDS})=([^;&\s\"'<>]+)")
# `SharedAccessSignature=sv=..&ss=..&sig=..;` in a connection string: the whole SAS up to the `;`.
_CONNECTION_SAS = re.compile(r"(?i)(SharedAccessSignature=)[^;\s\"']+")
_BEARER = re.compile(r"(?i)\b(Bearer)(\s+)[A-Za-z0-9._~+/=:%-]+")
_AUTH_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
                          r"(?:Basic|SharedKey|SharedAccessSignature|Digest|Negotiate)\s+)[^\s\"',;}]+")
_KEY_HEADER = re.compile(r"(?i)\b(x-functions-key|x-api-key|api-key|ocp-apim-subscription-key|aeg-sas-key|"
                         r"aeg-sas-token|x-ms-functions-key)([\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+")
_SECRET_FIELD = re.compile(r"(?i)([\"']?(?:primary_?key|secondary_?key|access_?token|refresh_?token|client_?secret|"
                           r"master_?key|function_?key|system_?key|webhook_?secret|scoring_?(?:admin_?)?key|"
                           r"pipeline_?token|account_?key)[\"']?\s*[:=]\s*)[\"']?[^\s\"',;}]+[\"']?")
_JWT = re.compile(r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*")

_lock = threading.Lock()
_values: set[str] = set()
_ordered: tuple[str, ...] = ()  # longest first, so a value containing another is masked whole


def register(*values: str | None) -> None:
    """Values that must never appear in a log line, span, message or printed URL (keys found at run time)."""
    global _ordered
    fresh = set()
    for value in values:
        for part in _parts(value):
            if part not in _values:
                fresh.add(part)
    if fresh:
        with _lock:
            _values.update(fresh)
            _ordered = tuple(sorted(_values, key=len, reverse=True))


def register_environment(env: Mapping[str, str] | None = None, names: Iterable[str] = SECRET_SETTINGS) -> None:
    """Register the values of the secret settings (call once at start-up; calling again adds new values)."""
    env = os.environ if env is None else env
    register(*(env.get(name) for name in names))


def registered() -> tuple[str, ...]:
    return _ordered


def forget_all() -> None:
    """Tests only: drop every registered value."""
    global _ordered
    with _lock:
        _values.clear()
        _ordered = ()


def _parts(value: str | None) -> list[str]:
    """A secret value and the secrets it embeds (connection-string fields, query parameters of a URL)."""
    if not value or not isinstance(value, str):
        return []
    value = value.strip()
    parts = [value]
    if "=" in value and (";" in value or value.lower().startswith(("accountname", "defaultendpoints"))):
        for item in value.split(";"):
            name, _, inner = item.partition("=")
            if _PAIR.fullmatch(f"{name.strip()}=x") and inner.strip():
                parts.append(inner.strip())
    queries = [urlsplit(value).query] if "://" in value and "?" in value else []
    queries += [p for p in parts[1:] if "=" in p]  # a SAS in a connection string: `sv=..&sig=..`
    for query in queries:
        parts.extend(v for k, v in parse_qsl(query) if k.lower() in SENSITIVE_QUERY_PARAMS)
    return [p for p in parts if len(p) >= MIN_SECRET_CHARS]


def redact(text: Any, mask: str = REDACTED, extra: Iterable[str] = ()) -> str:
    """`text` with every registered value (and `extra`) and every recognisable secret replaced by `mask`."""
    text = text if isinstance(text, str) else str(text)
    if not text:
        return text
    for secret in (*sorted((e for e in extra if e), key=len, reverse=True), *_ordered):
        if secret in text:
            text = text.replace(secret, mask)
    text = _CONNECTION_SAS.sub(lambda m: m.group(1) + mask, text)
    text = _PAIR.sub(lambda m: f"{m.group(1)}={mask}" if m.group(2) != mask else m.group(0), text)
    text = _BEARER.sub(lambda m: m.group(1) + m.group(2) + mask, text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + mask, text)
    text = _KEY_HEADER.sub(lambda m: m.group(1) + m.group(2) + mask, text)
    text = _SECRET_FIELD.sub(lambda m: m.group(1) + mask, text)
    return _JWT.sub(mask, text)


def redact_url(url: str) -> str:
    """A URL fit to print: scheme, host and path; a query string (it may carry `code=` or a SAS) becomes `?…`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


def redact_query(query: str, mask: str = REDACTED) -> str:
    """A query string with the values of its secret parameters (`code`, `sig`, ...) masked, the rest kept."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(k.lower() in SENSITIVE_QUERY_PARAMS for k, _ in pairs):
        return redact(query, mask)
    return redact(urlencode([(k, mask if k.lower() in SENSITIVE_QUERY_PARAMS else v) for k, v in pairs],
                            safe="[]*"), mask)


def is_sensitive(key: str) -> bool:
    """Whether an attribute named `key` holds a secret (matched on the key lower-cased, letters and digits only)."""
    norm = re.sub(r"[^a-z0-9]", "", str(key).lower())
    return any(part in norm for part in SENSITIVE_KEY_PARTS)


def redact_tree(value: Any, mask: str = REDACTED) -> Any:
    """A JSON-like tree with the values under sensitive keys masked and every string redacted."""
    if isinstance(value, Mapping):
        return {str(k): mask if is_sensitive(str(k)) else redact_tree(v, mask) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_tree(v, mask) for v in value]
    if isinstance(value, str):
        return redact(value, mask)
    return value


# ------------------------------------------------------------------------------------------------------ logging


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask a log record in place: its message (arguments merged in), exception text and stack."""
    done = getattr(record, "_redacted", None)  # what was masked: a record changed since (makeLogRecord) is redone
    if done is not None and done[0] is record.msg and done[1] is record.args:
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep the record as logging would report it
        return record
    clean = redact(message)
    if clean != message:
        args = record.args
        if isinstance(args, tuple) and args:
            # Keep the arguments' shape where masking them is enough (uvicorn's access formatter unpacks them).
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
            try:
                ok = record.getMessage() == clean
            except Exception:
                ok = False
            if not ok:
                record.msg, record.args = clean, ()
        else:
            record.msg, record.args = clean, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._redacted = (record.msg, record.args)
    return record


class RedactingFilter(logging.Filter):
    """A handler filter: every record it lets through is redacted (for handlers made outside this process's
    record factory, and as a second line of defence)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_installed = False


def install_logging(env: Mapping[str, str] | None = None) -> None:
    """Register the secret settings and make every log record of this process redacted when it is created, so
    every handler (console, file, the Functions worker's, Application Insights') sees masked text.

    Idempotent. Exception tracebacks are formatted (and masked) when the record is made."""
    global _installed
    register_environment(env)
    with _lock:
        if _installed:
            return
        _installed = True
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
