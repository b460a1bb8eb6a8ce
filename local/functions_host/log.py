"""Host logging: UTC timestamps to stdout, the running invocation named on each line, secrets redacted.

Redaction is shared.redaction's: the secret settings of the environment, the host's keys and the storage
account keys are registered there, and every log record of the process (the functions' too) is masked.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Iterable

from shared import redaction

current_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_function", default=None)


class _HostFormatter(logging.Formatter):
    converter = time.gmtime

    def __init__(self) -> None:
        super().__init__("[%(asctime)s.%(msecs)03dZ] %(levelname)s %(name)s: %(fn_tag)s%(message)s",
                         datefmt="%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        name = getattr(record, "invocation_function", None) or current_function.get()
        record.fn_tag = f"[Function.{name}] " if name else ""
        return redaction.redact(super().format(record))  # the whole line: message, traceback, extras


_formatter = _HostFormatter()


def configure_logging(level: int = logging.INFO) -> None:
    redaction.install_logging()  # the secret settings' values are known from here on
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
    redaction.register(*values)


def short_error(exc: BaseException) -> str:
    """First line of an error, for one-line warnings (storage errors carry long multi-line bodies)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
