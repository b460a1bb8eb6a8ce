"""Host logging: UTC timestamps to stdout, the running invocation named on each line, secrets redacted."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode

current_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_function", default=None)

REDACTED = "[REDACTED]"


class _HostFormatter(logging.Formatter):
    converter = time.gmtime

    def __init__(self) -> None:
        super().__init__("[%(asctime)s.%(msecs)03dZ] %(levelname)s %(name)s: %(fn_tag)s%(message)s",
                         datefmt="%Y-%m-%dT%H:%M:%S")
        self.secrets: list[str] = []

    def format(self, record: logging.LogRecord) -> str:
        name = getattr(record, "invocation_function", None) or current_function.get()
        record.fn_tag = f"[Function.{name}] " if name else ""
        text = super().format(record)
        for secret in self.secrets:
            if secret and secret in text:
                text = text.replace(secret, REDACTED)
        return text


_formatter = _HostFormatter()


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("azure", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True


def add_secrets(values: Iterable[str]) -> None:
    """Values (keys, connection-string account keys) that must never appear in a log line."""
    _formatter.secrets.extend(v for v in values if v and len(v) >= 8)


def redact_query(query: str) -> str:
    """A query string with the value of `code` replaced, for request log lines."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(k.lower() == "code" for k, _ in pairs):
        return query
    return urlencode([(k, REDACTED if k.lower() == "code" else v) for k, v in pairs], safe="[]")


def short_error(exc: BaseException) -> str:
    """First line of an error, for one-line warnings (storage errors carry long multi-line bodies)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
