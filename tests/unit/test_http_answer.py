"""function_app.to_response is the one place a service's HttpAnswer becomes the host's response: JSON with the
mimetype its status implies, a problem document as application/problem+json, ready bytes as they are."""

from __future__ import annotations

import json

from function_app import to_response
from shared.services.http_guard import HttpAnswer, problem


def test_a_json_answer_is_application_json_below_400_and_problem_json_from_400():
    ok = to_response(HttpAnswer(202, {"id": "r1"}, {"Location": "/api/runs/r1"}))
    assert ok.status_code == 202 and ok.mimetype == "application/json" and ok.charset == "utf-8"
    assert json.loads(ok.get_body()) == {"id": "r1"} and ok.headers["Location"] == "/api/runs/r1"
    stored = to_response(HttpAnswer(409, {"detail": "busy"}))  # e.g. an idempotent replay of a refusal
    assert stored.mimetype == "application/problem+json"


def test_a_problem_keeps_its_fields_and_names_its_route_only_when_given():
    refused = to_response(problem(405, "PUT is not allowed; use GET", {"Allow": "GET"}))
    assert refused.status_code == 405 and refused.mimetype == "application/problem+json"
    assert json.loads(refused.get_body()) == {"type": "about:blank", "title": "Method Not Allowed", "status": 405,
                                              "detail": "PUT is not allowed; use GET"}
    assert refused.headers["Allow"] == "GET"
    routed = problem(429, "slow down", instance="/api/retrain", invalid_params=[])
    assert list(routed.body) == ["type", "title", "status", "detail", "instance", "invalid_params"]


def test_bytes_go_out_as_they_are_with_their_mimetype_and_values_json_cannot_hold_as_text():
    page = to_response(HttpAnswer(200, b"<html></html>", {"Cache-Control": "no-store"}, mimetype="text/html"))
    assert page.get_body() == b"<html></html>" and page.mimetype == "text/html"
    health = to_response(HttpAnswer(503, {"status": "degraded"}, mimetype="application/json"))
    assert health.mimetype == "application/json"  # a 503 that is not a problem document says so
    assert json.loads(to_response(HttpAnswer(200, {"at": b"x"})).get_body()) == {"at": "b'x'"}
