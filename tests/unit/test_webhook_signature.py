"""HMAC request signing for POST /api/retrain: the fixed contract, every rejection, and what details never leak."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pytest

from shared.domain import webhook_signature as ws
from shared.domain.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, sign, verify

SECRET = "s3cr3t-webhook-key-0123456789"
BODY = b'{"dataset": "latest", "reason": "nightly"}'
NOW = 1_700_000_000


def _verify(headers, body=BODY, secret=SECRET, now=NOW, **kw):
    return verify(secret, body, headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER), now=now, **kw)


def _rejected(headers, body=BODY, secret=SECRET, now=NOW, **kw) -> str:
    with pytest.raises(SignatureError) as info:
        _verify(headers, body=body, secret=secret, now=now, **kw)
    detail = info.value.detail
    assert detail == str(info.value)
    for leaked in {SECRET, *([secret] if isinstance(secret, str) else secret)} - {""}:
        assert leaked not in detail
    assert re.search("[0-9a-fA-F]{64}", detail) is None  # neither the expected nor any other digest
    return detail


def test_sign_follows_the_documented_contract():
    headers = sign(SECRET, BODY, NOW)
    mac = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers == {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: f"sha256={mac}"}
    assert mac == mac.lower() and len(mac) == 64


def test_round_trip_returns_the_timestamp():
    assert _verify(sign(SECRET, BODY, NOW)) == NOW


def test_sign_defaults_to_the_current_time(monkeypatch):
    monkeypatch.setattr(ws.time, "time", lambda: NOW + 0.9)
    headers = sign(SECRET, BODY)
    assert headers[TIMESTAMP_HEADER] == str(NOW)
    assert _verify(headers) == NOW


def test_empty_body_round_trips():
    assert _verify(sign(SECRET, b"", NOW), body=b"") == NOW


def test_uppercase_hex_is_accepted():
    headers = sign(SECRET, BODY, NOW)
    headers[SIGNATURE_HEADER] = "sha256=" + headers[SIGNATURE_HEADER].removeprefix("sha256=").upper()
    assert _verify(headers) == NOW


def test_whitespace_around_headers_is_tolerated():
    headers = sign(SECRET, BODY, NOW)
    headers = {k: f" {v} " for k, v in headers.items()}
    assert _verify(headers) == NOW


def test_body_changed_by_one_byte_fails():
    headers = sign(SECRET, BODY, NOW)
    tampered = bytearray(BODY)
    tampered[-2] ^= 0x01
    detail = _rejected(headers, body=bytes(tampered))
    assert "does not match" in detail


def test_body_with_an_extra_byte_fails():
    _rejected(sign(SECRET, BODY, NOW), body=BODY + b" ")


def test_timestamp_changed_fails():
    headers = sign(SECRET, BODY, NOW)
    headers[TIMESTAMP_HEADER] = str(NOW + 1)
    assert "does not match" in _rejected(headers)


def test_wrong_secret_fails():
    detail = _rejected(sign("another-secret", BODY, NOW))
    assert "does not match" in detail and "secret" in detail


def test_missing_signature_header():
    headers = sign(SECRET, BODY, NOW)
    del headers[SIGNATURE_HEADER]
    detail = _rejected(headers)
    assert detail.startswith(f"missing {SIGNATURE_HEADER} header")
    assert "HMAC-SHA256" in detail
    headers[SIGNATURE_HEADER] = "   "
    assert _rejected(headers).startswith(f"missing {SIGNATURE_HEADER}")


def test_missing_timestamp_header():
    headers = sign(SECRET, BODY, NOW)
    del headers[TIMESTAMP_HEADER]
    assert _rejected(headers).startswith(f"missing {TIMESTAMP_HEADER} header")
    headers[TIMESTAMP_HEADER] = ""
    assert _rejected(headers).startswith(f"missing {TIMESTAMP_HEADER}")


@pytest.mark.parametrize("value", ["abc", "1700000000.5", "-1700000000", "1e9", "+1700000000", "١٧٠٠٠٠٠٠٠٠",
                                   "1_700_000_000", "99999999999999999999"])
def test_malformed_timestamp(value):
    headers = sign(SECRET, BODY, NOW)
    headers[TIMESTAMP_HEADER] = value
    detail = _rejected(headers)
    assert "must be an integer number of Unix seconds" in detail


def test_timestamp_too_old_says_how_old_and_the_limit():
    headers = sign(SECRET, BODY, NOW - 301)
    detail = _rejected(headers)
    assert "301 s old" in detail and "300 s (5 minutes)" in detail


def test_timestamp_at_the_limit_is_accepted_both_ways():
    assert _verify(sign(SECRET, BODY, NOW - 300)) == NOW - 300
    assert _verify(sign(SECRET, BODY, NOW + 300)) == NOW + 300


def test_timestamp_too_far_in_the_future_allows_the_same_skew():
    detail = _rejected(sign(SECRET, BODY, NOW + 301))
    assert "301 s in the future" in detail and "300 s (5 minutes)" in detail and "clock" in detail


def test_milliseconds_get_a_hint():
    detail = _rejected(sign(SECRET, BODY, NOW * 1000))
    assert "milliseconds" in detail


def test_custom_tolerance():
    headers = sign(SECRET, BODY, NOW - 61)
    detail = _rejected(headers, tolerance_s=60)
    assert "60 s (1 minute)" in detail
    assert _verify(headers, tolerance_s=120) == NOW - 61


def test_stale_request_is_rejected_before_any_hmac(monkeypatch):
    calls = []
    monkeypatch.setattr(ws.hmac, "compare_digest", lambda a, b: calls.append(1) or False)
    _rejected(sign(SECRET, BODY, NOW - 1000))
    assert calls == []


@pytest.mark.parametrize("value", ["sha1=" + "a" * 40, "sha256=" + "a" * 63, "sha256=" + "a" * 65,
                                   "sha256=" + "g" * 64, "a" * 64, "sha256 =" + "a" * 64, "sha256=", ","])
def test_malformed_signature_header(value):
    headers = sign(SECRET, BODY, NOW)
    headers[SIGNATURE_HEADER] = value
    detail = _rejected(headers)
    assert "malformed" in detail or "is empty" in detail
    assert "64 hex" in detail or "HMAC-SHA256" in detail


def test_malformed_detail_does_not_echo_a_long_value():
    headers = sign(SECRET, BODY, NOW)
    headers[SIGNATURE_HEADER] = "sha256=" + "z" * 64
    detail = _rejected(headers)
    assert "z" * 10 not in detail and "71 characters" in detail


def test_several_signatures_in_one_header_any_may_match():
    good = sign(SECRET, BODY, NOW)[SIGNATURE_HEADER]
    other = sign("old-secret", BODY, NOW)[SIGNATURE_HEADER]
    for header in (f"{other},{good}", f"{good}, {other}", f"{good},"):
        assert _verify({SIGNATURE_HEADER: header, TIMESTAMP_HEADER: str(NOW)}) == NOW
    assert "does not match" in _rejected({SIGNATURE_HEADER: f"{other},{other}", TIMESTAMP_HEADER: str(NOW)})


def test_one_malformed_value_among_several_is_rejected():
    good = sign(SECRET, BODY, NOW)[SIGNATURE_HEADER]
    assert "malformed" in _rejected({SIGNATURE_HEADER: f"{good},sha256=xyz", TIMESTAMP_HEADER: str(NOW)})


def test_too_many_signature_values_are_refused():
    good = sign(SECRET, BODY, NOW)[SIGNATURE_HEADER]
    header = ",".join([good] * (ws.MAX_SIGNATURES + 1))
    assert "at most" in _rejected({SIGNATURE_HEADER: header, TIMESTAMP_HEADER: str(NOW)})


def test_secret_rotation_accepts_any_configured_secret():
    secrets = ["new-secret", SECRET]
    assert _verify(sign(SECRET, BODY, NOW), secret=secrets) == NOW
    assert _verify(sign("new-secret", BODY, NOW), secret=tuple(secrets)) == NOW
    _rejected(sign("retired-secret", BODY, NOW), secret=secrets)


def test_no_secret_configured_is_a_server_error():
    headers = sign(SECRET, BODY, NOW)
    for secret in ("", [], ["", ""]):
        with pytest.raises(ValueError, match="no webhook secret") as info:
            _verify(headers, secret=secret)
        assert not isinstance(info.value, SignatureError)
    with pytest.raises(ValueError, match="empty"):
        sign("", BODY, NOW)


def test_comparison_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(ws.hmac, "compare_digest", recording)
    other = sign("old-secret", BODY, NOW)[SIGNATURE_HEADER]
    good = sign(SECRET, BODY, NOW)[SIGNATURE_HEADER]
    headers = {SIGNATURE_HEADER: f"{good},{other}", TIMESTAMP_HEADER: str(NOW)}
    assert _verify(headers, secret=[SECRET, "old-secret", "third"]) == NOW
    assert len(calls) == 6  # every secret against every value: no early exit on the first match
    calls.clear()
    _rejected(sign("wrong", BODY, NOW))
    assert len(calls) == 1


def test_a_digest_comparison_never_uses_equality(monkeypatch):
    # if verify compared with ==, a patched compare_digest that always says "equal" would not be consulted
    monkeypatch.setattr(ws.hmac, "compare_digest", lambda a, b: True)
    headers = {SIGNATURE_HEADER: "sha256=" + "0" * 64, TIMESTAMP_HEADER: str(NOW)}
    assert _verify(headers) == NOW


def test_replay_key_is_canonical():
    key = ws.replay_key(BODY, NOW)
    assert key == hashlib.sha256(f"{NOW}.".encode() + BODY).hexdigest()
    assert key != ws.replay_key(BODY, NOW + 1) and key != ws.replay_key(BODY + b" ", NOW)
    assert SECRET not in key and key not in sign(SECRET, BODY, NOW)[SIGNATURE_HEADER]


def test_the_module_stays_plain_python():
    source = Path(ws.__file__).read_text()
    assert "import azure" not in source and "from azure" not in source
