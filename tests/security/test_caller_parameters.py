"""Black box, against the running local stack: what a signed caller may choose, and what it may not.

A valid signature buys a retrain with the caller's `time_budget_s` (capped), `seed`, `exclude_columns` and
`primary_metric`: nothing that decides what gets compared or deployed (the champion, its version, the held-out
share), no dataset or lineage inside `parameters`, and no text that reaches the training command line. Every
refusal is a 400 problem document naming the parameter and a `rejected` audit record; a malformed dataset
reference too, and it frees its Idempotency-Key for the corrected request.
"""

from __future__ import annotations

import json
import uuid

import pandas as pd
import pytest
import requests

from shared.domain.validation import canonical_csv, content_hash
from shared.domain.webhook_signature import sign
from tests.e2e.api_stack import pipeline_jobs, start_api_stack

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"
SHELL_TEXT = ["x; id", "$(touch /tmp/pwned)", "`id`", "a | nc 127.0.0.1 9", "two\nlines", "${{inputs.seed}}",
              "--data=/etc/passwd"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_api_stack(tmp_path_factory.mktemp("caller-parameters-stack"), WEBHOOK_RATE_LIMIT="100000",
                        REJECT_LIMIT="100000")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def dataset(stack, small_bank_csv):
    """A registered dataset version (directly, so no upload trigger submits a run of its own)."""
    data = canonical_csv(pd.read_csv(small_bank_csv).head(1500))
    return stack.datasets.register(data, content_hash=content_hash(data), rows=1500, columns=21,
                                   source_blob=f"security/{uuid.uuid4().hex}.csv", source_etag=uuid.uuid4().hex,
                                   dialect="comma")


def post(stack, body: dict | bytes, idempotency_key: str | None = None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "x-functions-key": stack.host_keys.function_keys["default"],
               **sign(stack.secrets["webhook_secret"], data)}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return requests.post(stack.config.host_url + "/api/retrain", data=data, headers=headers, timeout=60)


def audited(stack, send):
    """`send()`'s response and the one webhook audit record written for it."""
    before = {r.id for r in stack.audit.list() if r.function == "retrain_http"}
    response = send()
    new = [r for r in stack.audit.list() if r.function == "retrain_http" and r.id not in before]
    assert len(new) == 1, f"{len(new)} webhook audit records for one request"
    return response, new[0]


def refused(stack, body, *words, status=400, idempotency_key=None):
    """A problem document with `status` whose detail names `words`, and its `rejected` audit record."""
    body = body if isinstance(body, bytes) else {**body, "requested_by": uuid.uuid4().hex}  # unique bytes
    response, record = audited(stack, lambda: post(stack, body, idempotency_key))
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].split(";")[0] == PROBLEM
    problem = response.json()
    assert problem["status"] == status and problem["type"] == "about:blank"
    for word in words:
        assert word in problem["detail"], (word, problem["detail"])
    assert record.outcome == "rejected" and record.data["status"] == status, record
    return problem


def submissions(stack) -> list[dict]:
    """Every run the local pipeline endpoint itself received."""
    return pipeline_jobs(stack)


@pytest.mark.parametrize(("parameters", "name"), [
    pytest.param({"champion_model": "/etc"}, "champion_model", id="champion-model"),
    pytest.param({"champion_model": "azureml://datastores/workspaceblobstore/paths/x"}, "champion_model",
                 id="champion-model-uri"),
    pytest.param({"champion_version": 1}, "champion_version", id="champion-version"),
    pytest.param({"champion_digest": "sha256:" + "0" * 64}, "champion_digest", id="champion-digest"),
    pytest.param({"evaluation_percent": 0}, "evaluation_percent", id="evaluation-percent"),
    pytest.param({"dataset_uri": "https://attacker.example/data.csv"}, "dataset_uri", id="dataset-uri"),
    pytest.param({"dataset_version": 1}, "dataset_version", id="dataset-version"),
    pytest.param({"experiment_name": "elsewhere"}, "experiment_name", id="experiment-name"),
    pytest.param({"trigger_id": "http-1"}, "trigger_id", id="trigger-id"),
    pytest.param({"drift_report": "reports/x.html"}, "drift_report", id="drift-report"),
    pytest.param({"reason": "upload"}, "reason", id="reason"),
])
def test_a_caller_cannot_choose_what_the_service_sets(stack, parameters, name):
    before = len(submissions(stack))
    refused(stack, {"dataset": "latest", "parameters": {"seed": 1, **parameters}}, f"parameters.{name}",
            "set by the service")
    assert len(submissions(stack)) == before  # nothing reached the pipeline


def test_a_caller_cannot_buy_more_compute_than_the_cap(stack):
    refused(stack, {"dataset": "latest", "parameters": {"time_budget_s": 86400}}, "parameters.time_budget_s",
            "at most 1800", "MAX_TIME_BUDGET_S")
    refused(stack, {"dataset": "latest", "parameters": {"time_budget_s": 10 ** 30}}, "parameters.time_budget_s")


@pytest.mark.parametrize("text", SHELL_TEXT)
def test_shell_text_in_parameters_is_refused(stack, text):
    refused(stack, {"dataset": "latest", "parameters": {"reason": text}}, "parameters.reason")
    refused(stack, {"dataset": "latest", "parameters": {"exclude_columns": text}}, "parameters.exclude_columns")
    refused(stack, {"dataset": "latest", "parameters": {"primary_metric": text}}, "parameters.primary_metric")
    refused(stack, {"dataset": "latest", "parameters": {text: 1}}, "unknown parameter")


@pytest.mark.parametrize("dataset_ref", ["²", "v²", "1" * 400, "v" + "9" * 400, "0"])
def test_a_malformed_dataset_is_a_400_that_is_audited_and_does_not_lock_its_key(stack, dataset_ref):
    key = f"sec-{uuid.uuid4().hex}"
    problem = refused(stack, {"dataset": dataset_ref}, "field 'dataset'", idempotency_key=key)
    assert len(problem["detail"]) < 400
    # the key is free: the next request with it is handled (404 here), not "still being handled" or a replay
    refused(stack, {"dataset": "v999999"}, "dataset version v999999 does not exist", status=404,
            idempotency_key=key)


def test_an_allowlisted_request_is_accepted_and_the_pipeline_gets_only_data(stack, dataset):
    """The caller's free-text `reason` (shell text here) stays in the audit record; the pipeline gets the trigger
    kind, and the key a malformed request used first still works for the corrected one."""
    key = f"sec-{uuid.uuid4().hex}"
    refused(stack, {"dataset": "²"}, "field 'dataset'", idempotency_key=key)
    text = "$(touch /tmp/pwned); `id` | cat\n${{inputs.seed}}"
    body = {"dataset": f"v{dataset.version}", "reason": text, "requested_by": "security-suite",
            "parameters": {"time_budget_s": 3, "seed": 5, "exclude_columns": ["duration"],
                           "primary_metric": "AUC_weighted"}}
    response, record = audited(stack, lambda: post(stack, body, idempotency_key=key))
    assert response.status_code == 202, response.text
    assert record.data["reason"] == text and record.outcome in ("submitted", "queued")
    (sent,) = [r["inputs"] for r in submissions(stack)
               if str(r["inputs"].get("dataset_version")) == str(dataset.version)]
    assert sent["reason"] == "http" and sent["trigger_id"] == record.id
    assert (sent["time_budget_s"], sent["seed"], sent["exclude_columns"]) == ("3", "5", "duration")
    assert text not in json.dumps(sent)
    assert "champion_model" not in sent  # no live model: nothing for a caller to point it at either
