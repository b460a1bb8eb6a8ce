"""Span, event and metric attributes as OpenTelemetry accepts them, with secrets masked by shared.redaction.

Keys that name a secret are redacted and values that embed one are masked (shared.redaction's rules, plus the
configured Application Insights connection string and instrumentation key). No redaction rule lives here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from shared import redaction
from shared.telemetry.state import _state

REDACTED = redaction.REDACTED
MAX_VALUE_CHARS = 8192  # Application Insights keeps custom property values up to 8 KiB


def is_sensitive(key: str) -> bool:
    """Whether an attribute named `key` holds a secret (shared.redaction's rule)."""
    return redaction.is_sensitive(key)


def scrub(text: str) -> str:
    """Mask secrets embedded in free text (shared.redaction: registered secret settings and keys, connection
    string and SAS fields, bearer tokens) and the configured Application Insights connection string / key."""
    return redaction.redact(text, extra=_state.secrets)


def sanitize(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as OpenTelemetry accepts them (str, bool, int, float or a homogeneous sequence of them), with
    secrets redacted. None values are dropped; other values become scrubbed strings (mappings as JSON)."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        key = str(key)
        out[key] = REDACTED if is_sensitive(key) else _clean_value(value)
    return out


def _clean_value(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)[:MAX_VALUE_CHARS]
    if isinstance(value, Mapping):
        return scrub(json.dumps(redaction.redact_tree(value), default=str, sort_keys=True))[:MAX_VALUE_CHARS]
    if isinstance(value, Sequence | set | frozenset) and not isinstance(value, bytes | bytearray):
        items = [v for v in value if v is not None]
        kinds = {type(v) for v in items}
        if len(kinds) <= 1 and kinds <= {str, bool, int, float}:
            return tuple(scrub(v)[:MAX_VALUE_CHARS] if isinstance(v, str) else v for v in items)
        return scrub(json.dumps(redaction.redact_tree(items), default=str))[:MAX_VALUE_CHARS]
    return scrub(str(value))[:MAX_VALUE_CHARS]

