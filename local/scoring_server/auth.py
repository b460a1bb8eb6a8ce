"""The bearer-key check shared by /score and the admin routes: constant time, the key never logged or echoed."""

from __future__ import annotations

import hmac
from collections.abc import Iterable


def bearer_matches(headers: Iterable[tuple[bytes, bytes]], key: bytes) -> bool:
    """Whether the ASGI headers carry `Authorization: Bearer <key>`."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key)
    return False
