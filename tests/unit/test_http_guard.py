"""The signed routes' stateless checks (shared.services.http_guard): size from Content-Length before the body is
read, method, media type; the drift check's empty-body contract. (The stateful parts — refusal aggregate,
throttle, replay, single flight — are tested on Azurite: tests/integration/test_http_guard_azurite.py.)"""

from __future__ import annotations

import pytest

from shared.domain.records import AuditRecord
from shared.services.drift_on_demand import _no_parameters, result_answer
from shared.services.http_guard import (
    HOST_BODY_LIMIT,
    MAX_BODY,
    Refused,
    WebhookRequest,
    check_shape,
    declared_length,
    read_body,
)


def test_a_body_announced_over_the_limit_is_never_read():
    def never():
        raise AssertionError("the body was read")

    assert read_body({"Content-Length": str(MAX_BODY + 1)}, never) == b""
    assert read_body({"content-length": str(MAX_BODY)}, lambda: b"x") == b"x"
    assert read_body({}, lambda: b"chunked") == b"chunked"


@pytest.mark.parametrize("value, expected", [("12", 12), (" 7 ", 7), ("-1", None), ("1e3", None), ("", None),
                                             ("9" * 19, None)])
def test_content_length_is_a_plain_decimal_or_ignored(value, expected):
    assert declared_length({"Content-Length": value}) == expected


def refusal(request, **kwargs) -> Refused:
    with pytest.raises(Refused) as caught:
        check_shape(request, instance="/api/retrain", **kwargs)
    return caught.value


def test_the_size_is_refused_from_the_header_even_when_no_byte_was_read():
    refused = refusal(WebhookRequest(b"", {"Content-Length": str(5 * MAX_BODY)}))
    assert refused.status == 413 and f"the limit is {MAX_BODY} bytes" in refused.detail
    assert refusal(WebhookRequest(b"x" * (MAX_BODY + 1), {"Content-Type": "application/json"})).status == 413
    check_shape(WebhookRequest(b"x" * MAX_BODY, {"Content-Type": "application/json"}), instance="/api/retrain")


def test_method_then_size_then_media_type():
    assert refusal(WebhookRequest(b"", {}, "GET")).headers == {"Allow": "POST"}
    assert refusal(WebhookRequest(b"{}", {"Content-Type": "text/plain"})).status == 415
    check_shape(WebhookRequest(b"", {}), instance="/api/drift-check", media=None)  # no media type needed


def test_the_host_cap_fits_an_event_grid_delivery_and_is_not_the_platform_default():
    assert MAX_BODY < HOST_BODY_LIMIT < 100 * 1024 * 1024
    assert HOST_BODY_LIMIT >= 1024 * 1024 + 2  # one 1 MB event in a JSON array


@pytest.mark.parametrize("body", [b"", b"  ", b"{}", b" { } "])
def test_the_drift_check_accepts_an_empty_body(body):
    _no_parameters(body)


@pytest.mark.parametrize("body", [b"[]", b'{"window_s": 1}', b"null", b"\xff"])
def test_the_drift_check_refuses_parameters(body):
    with pytest.raises(Refused) as caught:
        _no_parameters(body)
    assert caught.value.status == 400


def test_a_handed_over_window_is_202_and_the_answer_keeps_its_keys():
    record = AuditRecord(id="http-1", trigger="http", function="drift_http", started_at=1.0, outcome="profiling")
    record.data["offload"] = {"job": "job-7"}
    answer = result_answer(record)
    assert answer.status == 202 and answer.body["job"] == "job-7" and answer.headers["Location"] == "/api/runs/http-1"
    assert set(answer.body) == {"audit_id", "outcome", "detail", "run_id", "drift", "report", "job"}
