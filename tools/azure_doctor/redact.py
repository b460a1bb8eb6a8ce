"""What a check's message may show: no token, key, signature or URL query string, and not too long."""

from __future__ import annotations

import re

from shared import redaction

_URL = re.compile(r"https?://[^\s\"'<>)]+")


def scrub(text: str, secrets: set[str] | None = None) -> str:
    """Messages may quote service errors: no token, key, signature or URL query string gets through
    (shared.redaction's rules, with `***` as the mask, plus the tokens this doctor was handed)."""
    text = redaction.redact(text, "***", extra=secrets or ())
    return _URL.sub(lambda m: redaction.redact_url(m.group(0)), text)


def clip(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
