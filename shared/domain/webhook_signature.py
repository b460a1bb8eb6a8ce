"""HMAC-SHA256 signing of `POST /api/retrain`, so a leaked function key alone cannot trigger a retrain.

Contract (fixed; the CLI client and README use `sign`):

    X-Retrain-Timestamp: <Unix seconds, integer>
    X-Retrain-Signature: sha256=<lowercase hex HMAC-SHA256(secret, TIMESTAMP + "." + raw body bytes)>

The timestamp is signed with the body so a captured request cannot be replayed later than the tolerance; within
the tolerance the caller's replay guard (shared.adapters.webhook_state.ReplayGuard, keyed by `replay_key`) stops
it. Several `sha256=` values separated by commas are accepted and `verify` takes several secrets, so a secret can
be rotated without a flag day: valid when any signature matches any secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "X-Retrain-Signature"
TIMESTAMP_HEADER = "X-Retrain-Timestamp"
TOLERANCE_S = 300
MAX_SIGNATURES = 8  # bounds the work an unauthenticated header can cause

_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_HOW = (f"{SIGNATURE_HEADER} must be 'sha256=' + the lowercase hex HMAC-SHA256 of "
        f"{TIMESTAMP_HEADER} + '.' + the raw body bytes, keyed with the shared webhook secret")


class SignatureError(ValueError):
    """The request is not authentic; `detail` says why, for a 401 answer (never contains secret or digest)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The two headers for `body` (reference implementation: sign the exact bytes you send, just before sending)."""
    if not secret:
        raise ValueError("the webhook secret is empty")
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: "sha256=" + _digest(secret, body, ts)}


def replay_key(body: bytes, timestamp: int) -> str:
    """What the replay guard remembers: a digest of the signed message, not of the header, so re-sending the same
    request with the hex upper-cased or extra comma-separated values is still recognised as a replay."""
    return hashlib.sha256(str(timestamp).encode("ascii") + b"." + body).hexdigest()


def _limit(tolerance_s: int) -> str:
    if tolerance_s % 60:
        return f"{tolerance_s} s"
    minutes = tolerance_s // 60
    return f"{tolerance_s} s ({minutes} minute{'s' if minutes != 1 else ''})"


def _parse_timestamp(header: str, *, now: float, tolerance_s: int) -> int:
    text = header.strip()
    if not _TIMESTAMP.fullmatch(text):
        raise SignatureError(f"{TIMESTAMP_HEADER} must be an integer number of Unix seconds, got {text[:40]!r}")
    ts = int(text)
    age = now - ts
    if age > tolerance_s:
        raise SignatureError(f"{TIMESTAMP_HEADER} is {int(age)} s old; a signed request must arrive within "
                             f"{_limit(tolerance_s)} of its timestamp: sign each request just before sending it, "
                             "and check the sender's clock")
    if -age > tolerance_s:
        hint = " (it looks like milliseconds; send seconds)" if ts > 10**11 else ""
        raise SignatureError(f"{TIMESTAMP_HEADER} is {int(-age)} s in the future{hint}; at most "
                             f"{_limit(tolerance_s)} of clock skew is allowed: check the sender's clock (NTP)")
    return ts


def _parse_signatures(header: str) -> list[str]:
    values = [v.strip() for v in header.split(",") if v.strip()]
    if not values:
        raise SignatureError(f"{SIGNATURE_HEADER} is empty; {_HOW}")
    if len(values) > MAX_SIGNATURES:
        raise SignatureError(f"{SIGNATURE_HEADER} has {len(values)} values; at most {MAX_SIGNATURES} are accepted")
    digests = []
    for value in values:
        match = _SIGNATURE.fullmatch(value)
        if not match:
            shown = value[:7] + "..." if len(value) > 7 else value
            raise SignatureError(f"{SIGNATURE_HEADER} value {shown!r} is malformed: each comma-separated value must "
                                 f"be 'sha256=' followed by 64 hex characters ({len(value)} characters received)")
        digests.append(match.group(1).lower())
    return digests


def verify(secret: str | Sequence[str], body: bytes, signature_header: str | None, timestamp_header: str | None,
           *, now: float, tolerance_s: int = TOLERANCE_S) -> int:
    """The request's timestamp when one signature matches one secret; otherwise `SignatureError`.

    Checks run cheapest first (headers present, well-formed, fresh) so a stale or garbled request costs no HMAC.
    Every candidate is compared with `hmac.compare_digest`, without stopping at the first match.
    """
    secrets = [secret] if isinstance(secret, str) else list(secret)
    secrets = [s for s in secrets if s]
    if not secrets:
        raise ValueError("no webhook secret is configured")  # a server fault, not the caller's
    if signature_header is None or not signature_header.strip():
        raise SignatureError(f"missing {SIGNATURE_HEADER} header; {_HOW}")
    if timestamp_header is None or not timestamp_header.strip():
        raise SignatureError(f"missing {TIMESTAMP_HEADER} header: send the Unix time in seconds at signing, "
                             "the same value that was signed")
    candidates = _parse_signatures(signature_header)
    ts = _parse_timestamp(timestamp_header, now=now, tolerance_s=tolerance_s)
    matched = False
    for s in secrets:
        expected = _digest(s, body, ts).encode("ascii")
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate.encode("ascii"))
    if not matched:
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the request: {_HOW}. Check the secret, sign the "
                             "exact bytes sent (not re-serialised JSON) and sign with the timestamp sent")
    return ts
