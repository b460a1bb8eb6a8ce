"""The running app against its own OpenAPI document: schemathesis generates requests for every operation from the
live GET /api/openapi.json, sends them to the local Functions host (function key on every call; POST /api/retrain
signed over the exact bytes sent) and checks each answer against the document.

Bounded and reproducible: a fixed seed, deterministic generation, at most MAX_EXAMPLES fuzzed cases per operation
(plus schemathesis' examples and coverage phases, a fixed set of cases derived from the document). Accepted retrains
train for TIME_BUDGET_S at most, and the local pipeline endpoint runs them one at a time, so a dataset stays "in
flight" for a while and later requests for it are answered 409, as the document allows. Nothing waits for training.
"""

from __future__ import annotations

import collections
import json
import time
import uuid

import jsonschema
import pandas as pd
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.domain.validation import canonical_csv, content_hash
from shared.domain.webhook_signature import sign
from tests.e2e.api_stack import start_api_stack

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 20
SEED = 20260101
TIME_BUDGET_S = 3
REPLAY_HEADROOM_S, MAX_REPEATS = 280, 550  # the signature tolerance is 300 s either side of the server's clock
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


@pytest.fixture(scope="module")
def training_csv(small_bank_csv) -> bytes:
    return canonical_csv(pd.read_csv(small_bank_csv).head(1500))


def register_dataset(stack, data: bytes) -> int:
    return stack.datasets.register(data, content_hash=content_hash(data), rows=1500, columns=21,
                                   source_blob=f"e2e/{uuid.uuid4().hex}.csv", source_etag=uuid.uuid4().hex,
                                   dialect="comma").version


@pytest.fixture(scope="module")
def stack(tmp_path_factory, training_csv):
    s = start_api_stack(tmp_path_factory.mktemp("schema-stack"), budget_s=TIME_BUDGET_S,
                        WEBHOOK_RATE_LIMIT="0", REJECT_LIMIT="0")  # no limits: schemathesis sends many requests,
    # most of them unsigned (the refusal throttle has tests of its own in tests/security/test_rejections.py)
    try:
        for _ in range(2):  # "latest", "1" and "v2" name real versions, so some requests are accepted (202)
            register_dataset(s, training_csv)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def api_schema(stack):
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True,
                       "with-security-parameters": False},  # the function key is the test's, never generated
        "phases": {"stateful": {"enabled": False}},
    })
    return schemathesis.openapi.from_url(stack.config.host_url + "/api/openapi.json", config=config, timeout=10)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    """schemathesis 4.32.5's from_fixture reads `request.node._nodeid`, which pytest 9 no longer has (the id lives
    in `_id`): without it every lazily loaded schema test fails with AttributeError before sending anything. It
    only uses the value to label subtests."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


_SENT: collections.Counter = collections.Counter()


def fresh_timestamp(data: bytes) -> int:
    """A timestamp this body was never signed with. Schemathesis sends the same body many times (varying only
    headers, or the same example again), often within one second, and the same body signed with the same timestamp
    is a replay (401): each repeat is signed one second later than the previous one, starting REPLAY_HEADROOM_S in
    the past, which keeps every timestamp within the tolerance for MAX_REPEATS repeats."""
    _SENT[data] += 1
    assert _SENT[data] <= MAX_REPEATS, "too many repeats of one body to sign each with a fresh timestamp"
    return int(time.time()) - REPLAY_HEADROOM_S + _SENT[data]


def body_bytes(case) -> bytes:
    """The generated body, serialized once here: these exact bytes are signed and sent (`data=`)."""
    body = case.body
    if isinstance(body, NotSet):
        return b""
    if isinstance(body, bytes):  # raw bytes (negative and media-type probes): sent as they are
        return body
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def keep_training_short(case) -> None:
    """A generated time_budget_s can be up to a day: an accepted run would train that long. Valid ones are capped."""
    parameters = case.body.get("parameters") if isinstance(case.body, dict) else None
    budget = parameters.get("time_budget_s") if isinstance(parameters, dict) else None
    if isinstance(budget, int) and not isinstance(budget, bool) and budget > TIME_BUDGET_S:
        parameters["time_budget_s"] = TIME_BUDGET_S


@schema.parametrize()
def test_the_app_answers_as_its_document_says(case, stack):
    headers = {"x-functions-key": stack.host_keys.function_keys["default"]}
    kwargs = {}
    if case.operation.method.upper() == "POST" and case.operation.path == "/api/retrain":
        keep_training_short(case)
        data = body_bytes(case)
        headers.update(sign(stack.secrets["webhook_secret"], data, fresh_timestamp(data)))
        kwargs["data"] = data  # sent instead of schemathesis' own serialization of case.body
    response = case.call(headers=headers, timeout=30, **kwargs)
    checks = list(CHECKS)
    if case.operation.path == "/api/health" and response.status_code == 503:
        checks.remove(not_a_server_error)  # documented: a dependency did not answer (the body says which)
    case.validate_response(response, checks=checks, headers=headers, transport_kwargs={"headers": headers, **kwargs})


def test_the_document_is_served_without_a_key(stack):
    response = requests.get(stack.config.host_url + "/api/openapi.json", timeout=10)
    assert response.status_code == 200 and response.json()["openapi"].startswith("3.1")
    assert response.headers["Content-Type"].startswith("application/json")


# ------------------------------------------------------------------------------ answers fuzzing rarely reaches


def retrain(stack, body: dict, **headers: str) -> tuple[requests.Response, dict]:
    data = json.dumps(body, separators=(",", ":")).encode()
    sent = {"Content-Type": "application/json", "x-functions-key": stack.host_keys.function_keys["default"],
            **sign(stack.secrets["webhook_secret"], data, fresh_timestamp(data)), **headers}
    return requests.post(stack.config.host_url + "/api/retrain", data=data, headers=sent, timeout=30), sent


def run_at(stack, location: str) -> dict:
    """What a `Location` answers: the run (or the request still queued) it names."""
    answer = requests.get(stack.config.host_url + location,
                          headers={"x-functions-key": stack.host_keys.function_keys["default"]}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def assert_conforms(api_schema, body: dict, response: requests.Response, headers: dict) -> None:
    """schemathesis' verdict on one answer of POST /api/retrain, with the same checks as the generated cases."""
    case = api_schema["/api/retrain"]["POST"].Case(body=body, headers=headers, media_type="application/json")
    case.validate_response(response, checks=CHECKS, headers=headers)


def test_an_accepted_retrain_and_a_retrain_in_flight_conform(stack, api_schema, training_csv):
    version = register_dataset(stack, training_csv)
    body = {"dataset": f"v{version}", "reason": "schema", "parameters": {"time_budget_s": TIME_BUDGET_S}}
    accepted, headers = retrain(stack, body)
    assert accepted.status_code == 202, accepted.text
    assert_conforms(api_schema, body, accepted, headers)
    again = {**body, "reason": "again"}
    busy, headers = retrain(stack, again)
    # the same run: the 202 of a request still queued names the request (which names its run once submitted),
    # a 409 after the submission names the run itself; either answers the trigger (the request's audit id)
    assert busy.status_code == 409, busy.text
    triggers = [run_at(stack, answer.headers["Location"])["trigger_id"] for answer in (busy, accepted)]
    assert triggers == [accepted.json()["audit_id"]] * 2, triggers
    assert_conforms(api_schema, again, busy, headers)
    new_key, headers = retrain(stack, body, **{"Idempotency-Key": str(uuid.uuid4())})
    assert new_key.status_code == 409, new_key.text  # a fresh key does not get around the run in flight
    assert_conforms(api_schema, body, new_key, headers)


def test_an_idempotency_key_conflict_conforms(stack, api_schema, training_csv):
    version = register_dataset(stack, training_csv)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first, _ = retrain(stack, {"dataset": f"v{version}", "reason": "first"}, **key)
    assert first.status_code == 202, first.text
    other = {"dataset": f"v{version}", "reason": "second"}
    conflict, headers = retrain(stack, other, **key)
    assert conflict.status_code == 409 and "different request body" in conflict.json()["detail"], conflict.text
    assert_conforms(api_schema, other, conflict, headers)


@pytest.mark.parametrize("dataset", ["https://account.blob.core.windows.net", "ftp://account/incoming/data.csv",
                                     "azureml://datastores/workspaceblobstore/paths/data.csv"])
def test_a_dataset_uri_the_document_accepts_is_not_refused_as_malformed(stack, api_schema, dataset):
    body = {"dataset": dataset}
    request_schema = api_schema.raw_schema["components"]["schemas"]["RetrainRequest"]
    if list(jsonschema.Draft202012Validator(request_schema).iter_errors(body)):
        return  # the document no longer accepts it: document and webhook agree
    response, _ = retrain(stack, body)
    assert response.status_code != 400, response.json()["detail"]  # 404 (no such blob) would be consistent
