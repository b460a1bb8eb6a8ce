"""The webhook service with its real guard on Azurite (replay table, idempotency keys, rate counters) and a
pipeline endpoint on loopback: every answer, its problem document, and its audit record."""

from __future__ import annotations

import json
import uuid

import pytest

from shared.adapters import storage
from shared.adapters.credentials import StaticTokenCredential
from shared.adapters.outbox import Outbox
from shared.adapters.pipeline_client import PublishedPipelineClient
from shared.adapters.webhook_state import IdempotencyStore, RateLimiter, ReplayGuard
from shared.bootstrap import build_stores
from shared.domain.records import RunRecord
from shared.domain.webhook_signature import sign
from shared.services.http_retrain import MAX_BODY, WebhookGuard, WebhookIntake, WebhookRequest, retrain_http
from shared.services.retrain import PipelineTarget, RetrainDispatch
from shared.settings import Settings
from tests.isolation import isolated_settings

SUBMIT = "/pipelines/v1.0/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/" \
         "workspaces/w/PipelineRuns/PipelineSubmit/p1"
TARGET = PipelineTarget(experiment="exp", datastore="workspaceblobstore", data_input="training_data", budget_s=5)
SECRET = "s3cret-" + uuid.uuid4().hex
NOW = 1_800_000_000.0


@pytest.fixture
def env(azurite, httpserver, small_bank_csv):
    settings = isolated_settings(azurite)
    storage.ensure_container(storage.blob_service(settings), settings.datasets_container)
    stores = build_stores(settings)
    dataset = stores.datasets.register(small_bank_csv.read_bytes(), content_hash="h", rows=3000, columns=21,
                                       source_blob="incoming/bank.csv", source_etag="1", dialect="comma")
    table = storage.ensure_table(storage.table_service(settings), settings.webhook_table)
    guard = WebhookGuard(secrets=(SECRET,), replay=ReplayGuard(table), rate=RateLimiter(table, 5, 60),
                         idempotency=IdempotencyStore(table))
    pipeline = PublishedPipelineClient(httpserver.url_for(SUBMIT), StaticTokenCredential("t"), max_retries=0)
    outbox = Outbox(storage.ensure_table(storage.table_service(settings), settings.outbox_table))

    def call(body, *, headers=None, signed=True, at=NOW, method="POST", client="10.0.0.1:5000", now=None):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", "X-Forwarded-For": client}
        if signed:
            sent.update(sign(SECRET, raw, int(at)))
        sent.update(headers or {})
        return retrain_http(WebhookRequest(raw, sent, method), WebhookIntake(guard, retrain(stores, outbox, pipeline)),
                            now=NOW if now is None else now)

    return type("Env", (), {"call": staticmethod(call), "stores": stores, "dataset": dataset, "guard": guard,
                            "settings": settings, "outbox": outbox})


def retrain(stores, outbox, pipeline=None) -> RetrainDispatch:
    """No pipeline: the request is refused before anything is submitted."""
    return RetrainDispatch(outbox=outbox, runs=stores.runs, pipeline=pipeline, datasets=stores.datasets,
                           audit=stores.audit, models=stores.models, target=TARGET)


def accept(httpserver, run_id):
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_json({"Id": run_id})


def assert_problem(answer, record, status, text):
    assert answer.status == status, answer
    assert set(answer.body) >= {"type", "title", "status", "detail"} and answer.body["status"] == status
    assert text in answer.body["detail"], answer.body["detail"]
    assert record.outcome == "rejected" and str(status) in record.detail
    assert SECRET not in json.dumps(answer.body) and SECRET not in record.detail


def test_signed_request_is_accepted_with_location_and_the_run_record(env, httpserver):
    accept(httpserver, "run-1")
    answer, record = env.call({"dataset": "latest", "reason": "ci", "requested_by": "pipeline-7",
                               "parameters": {"seed": 3}})
    assert answer.status == 202 and answer.headers["Location"] == "/api/runs/run-1"
    assert answer.body["run_id"] == answer.body["id"] == "run-1" and answer.body["status"] == "Submitted"
    assert answer.body["dataset_version"] == env.dataset.version and answer.body["reason"] == "http"
    stored = env.stores.audit.get(record.id)
    assert stored.outcome == "submitted" and stored.data["requested_by"] == "pipeline-7"
    assert stored.data["client"] == "10.0.0.1" and stored.data["reason"] == "ci"  # the caller's words: audit only
    (request, _), = httpserver.log
    sent = request.get_json()["ParameterAssignments"]
    assert sent["seed"] == "3"  # the REST contract's string assignments
    assert sent["reason"] == "http" and sent["trigger_id"] == record.id  # the trigger kind, not the caller's text


@pytest.mark.parametrize("headers, at, text", [
    ({"X-Retrain-Signature": None}, NOW, "missing"),
    ({"X-Retrain-Signature": "sha256=" + "0" * 64}, NOW, "does not match"),
    ({"X-Retrain-Timestamp": None}, NOW, "missing"),
    ({}, NOW - 301, "old"),
    ({}, NOW + 400, "future"),
    ({"X-Retrain-Signature": "md5=abc"}, NOW, "sha256="),
])
def test_bad_or_missing_signatures_and_timestamps_are_401(env, headers, at, text):
    raw = b'{"dataset": "latest"}'
    sent = {"Content-Type": "application/json", **sign(SECRET, raw, int(at))}
    for name, value in headers.items():
        if value is None:
            sent.pop(name)
        else:
            sent[name] = value
    answer, record = retrain_http(WebhookRequest(raw, sent), WebhookIntake(env.guard, retrain(env.stores, env.outbox)),
                                  now=NOW)
    assert_problem(answer, env.stores.audit.get(record.id), 401, text)


def test_the_same_signed_bytes_twice_are_a_replay(env, httpserver):
    accept(httpserver, "run-r")
    raw = b'{"dataset": "latest"}'
    headers = {"Content-Type": "application/json", **sign(SECRET, raw, int(NOW))}
    pipeline = PublishedPipelineClient(httpserver.url_for(SUBMIT), StaticTokenCredential("t"), max_retries=0)
    first, _ = retrain_http(WebhookRequest(raw, headers),
                            WebhookIntake(env.guard, retrain(env.stores, env.outbox, pipeline)), now=NOW)
    assert first.status == 202
    again, record = retrain_http(WebhookRequest(raw, headers),
                                 WebhookIntake(env.guard, retrain(env.stores, env.outbox)), now=NOW + 5)
    assert_problem(again, env.stores.audit.get(record.id), 401, "replay")


@pytest.mark.parametrize("body, status, text", [
    (b"{oops", 400, "not valid JSON"),
    (b"[1]", 400, "JSON object"),
    (b"{}", 400, "'dataset' is required"),
    (b'{"dataset": 3}', 400, "'dataset' must be a non-empty string"),
    (b'{"dataset": "latest", "colour": "red"}', 400, "unknown field 'colour'"),
    (b'{"dataset": "latest", "reason": "' + b"x" * 201 + b'"}', 400, "'reason' must be a string of at most 200"),
    (b'{"dataset": "latest", "parameters": {"seed": "x"}}', 400, "parameters.seed: must be an integer"),
    (b'{"dataset": "latest", "parameters": {"trigger_id": "x"}}', 400, "parameters.trigger_id is set by the service"),
    (b'{"dataset": "latest", "parameters": []}', 400, "'parameters' must be an object"),
    (b'{"dataset": "v99"}', 404, "dataset version v99 does not exist"),
    (b'{"dataset": "abc"}', 400, "blob URI"),
    (b'{"dataset": "https://acct.blob.core.windows.net/incoming/other.csv"}', 404, "no registered dataset version"),
])
def test_schema_violations_name_the_field(env, body, status, text):
    answer, record = env.call(body)
    assert_problem(answer, env.stores.audit.get(record.id), status, text)


def test_a_blob_uri_resolves_to_its_registered_version(env, httpserver):
    for uri in (f"https://acct.blob.core.windows.net/{env.dataset.container}/{env.dataset.path}",
                "http://127.0.0.1:10000/devstoreaccount1/incoming/bank.csv"):
        accept(httpserver, f"run-{len(httpserver.log)}")
        answer, _ = env.call({"dataset": uri}, at=NOW + len(httpserver.log), now=NOW + len(httpserver.log))
        assert answer.status == 202 and answer.body["dataset_version"] == env.dataset.version, answer
        run = env.stores.runs.get(answer.body["run_id"])
        run.status = "Deployed"
        env.stores.runs.save(run)


def test_size_media_type_and_method(env):
    answer, record = env.call(b'{"dataset": "' + b"x" * MAX_BODY + b'"}')
    assert_problem(answer, env.stores.audit.get(record.id), 413, "limit is 1048576 bytes")
    answer, record = env.call(b'{"dataset": "latest"}', headers={"Content-Type": "text/plain"})
    assert_problem(answer, env.stores.audit.get(record.id), 415, "must be application/json, got 'text/plain'")
    assert answer.headers["Accept-Post"] == "application/json"
    answer, record = env.call(b"", method="GET")
    assert_problem(answer, env.stores.audit.get(record.id), 405, "use POST")
    assert answer.headers["Allow"] == "POST"
    answer, _ = env.call(b'{"dataset": "v99"}', headers={"Content-Type": "application/json; charset=utf-8"})
    assert answer.status == 404  # parameters on the media type are fine


def test_idempotency_key_returns_the_first_answer_and_refuses_another_body(env, httpserver):
    accept(httpserver, "run-i")
    key = {"Idempotency-Key": "deploy-" + uuid.uuid4().hex}
    first, _ = env.call({"dataset": "latest", "reason": "ci"}, headers=key)
    assert first.status == 202 and len(httpserver.log) == 1
    again, record = env.call({"reason": "ci", "dataset": "latest"}, headers=key, at=NOW + 1, now=NOW + 1)
    assert again.status == 202 and again.body == first.body and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == "/api/runs/run-i" and len(httpserver.log) == 1  # one submission
    assert env.stores.audit.get(record.id).outcome == "duplicate"
    other, record = env.call({"dataset": "latest", "reason": "other"}, headers=key, at=NOW + 2, now=NOW + 2)
    assert_problem(other, env.stores.audit.get(record.id), 409, "different request body")
    assert len(env.stores.runs.list()) == 1


def test_a_rejected_request_does_not_burn_its_idempotency_key(env, httpserver):
    key = {"Idempotency-Key": "k-" + uuid.uuid4().hex}
    run = RunRecord(run_id="busy", trigger_id="t", trigger="blob", reason="upload", dataset_version=env.dataset.version,
                    submitted_at=NOW, status="Submitted", experiment="exp")
    env.stores.runs.create(run)
    busy, record = env.call({"dataset": "latest"}, headers=key)
    assert_problem(busy, env.stores.audit.get(record.id), 409, "already in flight (run busy")
    assert busy.headers["Location"] == "/api/runs/busy"
    run.status = "Deployed"
    env.stores.runs.save(run)
    accept(httpserver, "run-after")
    retry, _ = env.call({"dataset": "latest"}, headers=key, at=NOW + 1, now=NOW + 1)
    assert retry.status == 202 and retry.body["run_id"] == "run-after"


def test_a_caller_over_the_rate_gets_429_with_retry_after_and_others_do_not(env):
    answers = [env.call(b'{"dataset": "v99"}', at=NOW + i, now=NOW + i)[0] for i in range(6)]
    assert [a.status for a in answers] == [404] * 5 + [429]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    other, _ = env.call(b'{"dataset": "v99"}', client="10.0.0.2:1", at=NOW + 7, now=NOW + 7)
    assert other.status == 404
    later, _ = env.call(b'{"dataset": "v99"}', at=NOW + 61, now=NOW + 61)
    assert later.status == 404  # the next window


def test_without_a_configured_secret_nothing_is_accepted(env):
    guard = WebhookGuard(secrets=(), replay=env.guard.replay, rate=env.guard.rate, idempotency=env.guard.idempotency)
    raw = b'{"dataset": "latest"}'
    answer, record = retrain_http(WebhookRequest(raw, {"Content-Type": "application/json", **sign("x", raw, int(NOW))}),
                                  WebhookIntake(guard, retrain(env.stores, env.outbox)), now=NOW)
    assert answer.status == 503 and "WEBHOOK_SECRET" in answer.body["detail"]
    assert env.stores.audit.get(record.id).outcome == "failed"


def test_the_rate_limit_counts_the_address_the_front_end_saw_not_the_one_the_caller_claims(env):
    claims = [f"203.0.113.{i}, 10.0.0.9:443" for i in range(6)]  # a forged first entry, then the front end's
    answers = [env.call(b'{"dataset": "v99"}', client=c, at=NOW + i, now=NOW + i)[0] for i, c in enumerate(claims)]
    assert [a.status for a in answers] == [404] * 5 + [429]
    assert WebhookRequest(b"", {"X-Forwarded-For": "[2001:db8::1]:443"}).client == "2001:db8::1"
    assert WebhookRequest(b"", {}).client == "unknown"


def test_an_unresolved_key_vault_reference_is_never_used_as_the_secret(azurite, monkeypatch):
    from shared.bootstrap import webhook_guard

    monkeypatch.setenv("WEBHOOK_SECRET", "@Microsoft.KeyVault(VaultName=kv;SecretName=webhook-secret)")
    monkeypatch.setenv("WEBHOOK_SECRET_PREVIOUS", "older-secret")
    settings = Settings(storage_connection=azurite, webhook_table=f"webhook{uuid.uuid4().hex[:8]}")
    guard = webhook_guard(settings, storage.table_service(settings))
    assert guard.secrets == ("older-secret",)


# ------------------------------------------------------------------------------ caller parameters: an allowlist


def _live_model(env, tmp_path):
    """A live model with a registered digest, as the completion handler registers one."""
    folder = tmp_path / "live-model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    from shared.scoring.model_digest import folder_digest

    model = env.stores.models.register(run_id="r0", dataset_version=env.dataset.version, model_dir=str(folder),
                                       metrics={}, digest=folder_digest(folder))
    env.stores.models.set_live(model.version)
    return model


@pytest.mark.parametrize("parameters, name", [
    ({"champion_model": "/etc"}, "champion_model"),
    ({"champion_version": 1}, "champion_version"),
    ({"champion_digest": "sha256:" + "0" * 64}, "champion_digest"),
    ({"evaluation_percent": 0}, "evaluation_percent"),
    ({"experiment_name": "mine"}, "experiment_name"),
    ({"drift_report": "reports/x.html"}, "drift_report"),
    ({"dataset_uri": "https://evil.example/x.csv"}, "dataset_uri"),
    ({"reason": "http"}, "reason"),
    ({"seed": 1, "champion_model": "/etc"}, "champion_model"),
])
def test_parameters_outside_the_allowlist_are_refused_by_name(env, parameters, name):
    answer, record = env.call({"dataset": "latest", "parameters": parameters})
    assert_problem(answer, env.stores.audit.get(record.id), 400, f"parameters.{name} is set by the service")
    assert env.stores.runs.list() == []


def test_a_caller_budget_over_the_cap_is_refused(env):
    answer, record = env.call({"dataset": "latest", "parameters": {"time_budget_s": 86400}})
    assert_problem(answer, env.stores.audit.get(record.id), 400, "parameters.time_budget_s: must be at most 1800")


@pytest.mark.parametrize("value", ["x; rm -rf /", "$(id)", "`id`", "a | b", "line\nbreak", "${{inputs.seed}}"])
def test_shell_text_in_parameters_is_refused(env, value):
    for parameters in ({"reason": value}, {"exclude_columns": value}, {"primary_metric": value}, {value: 1}):
        answer, record = env.call({"dataset": "latest", "parameters": parameters}, client=f"10.9.{len(value)}.1")
        assert answer.status == 400, (parameters, answer)
        assert env.stores.audit.get(record.id).outcome == "rejected"


def test_the_service_sets_the_champion_from_the_registry_after_the_caller(env, httpserver, tmp_path):
    live = _live_model(env, tmp_path)
    accept(httpserver, "run-c")
    answer, _ = env.call({"dataset": "latest", "reason": "$(id)", "parameters": {"time_budget_s": 7, "seed": 2}})
    assert answer.status == 202, answer
    (request, _), = httpserver.log
    sent = request.get_json()["ParameterAssignments"]
    assert sent["champion_model"] == live.model_dir and sent["champion_version"] == str(live.version)
    assert sent["champion_digest"] == live.digest and sent["evaluation_percent"] == str(TARGET.evaluation_percent)
    assert sent["time_budget_s"] == "7" and sent["seed"] == "2" and sent["reason"] == "http"


# ------------------------------------------------------------------------------ no input gives a 500


@pytest.mark.parametrize("dataset, text", [
    ("²", 'must be "latest"'),
    ("v²", 'must be "latest"'),
    ("٣", 'must be "latest"'),
    ("1" * 400, "a version is a number from 1 to 9999999999"),
    ("v" + "9" * 5000, "a version is a number from 1 to 9999999999"),
    ("0", "a version is a number from 1"),
    ("http://[::1/x", 'must be "latest"'),
])
def test_a_malformed_dataset_is_a_400_that_is_audited_and_frees_the_idempotency_key(env, httpserver, dataset, text):
    key = {"Idempotency-Key": "k-" + uuid.uuid4().hex}
    answer, record = env.call({"dataset": dataset}, headers=key)
    assert_problem(answer, env.stores.audit.get(record.id), 400, text)
    assert len(answer.body["detail"]) < 400
    accept(httpserver, "run-fixed")  # the same key with the corrected body goes through
    fixed, _ = env.call({"dataset": "latest"}, headers=key, at=NOW + 1, now=NOW + 1)
    assert fixed.status == 202 and fixed.body["run_id"] == "run-fixed"


NASTY_VALUES = ["²", "1" * 400, "9" * 5000, "\ud800", "\U0001F600" * 100, "x" * 100_000, "\x00", "$(id)", "..",
                None, True, 0, -1, 10 ** 30, 1e308, 1.5, [], {}, ["duration"] * 1000, [[[]]]]


def _bodies():
    raw = [b'{"dataset": "latest", "parameters": {"seed": NaN}}', b'{"dataset": "latest", "parameters": '
           b'{"time_budget_s": Infinity}}', b'{"dataset": "latest", "parameters": {"seed": -Infinity}}',
           b'{"dataset": "latest", "parameters": {"seed": ' + b"9" * 5000 + b"}}",
           b'{"dataset": "\\ud800"}', b'{"dataset": "latest", "requested_by": "\\udfff"}',
           b'{"dataset": "latest", "reason": "\\u0000"}', b"[" * 100_000 + b"]" * 100_000,
           b'{"' + b"k" * 500_000 + b'": 1}', b'{"dataset": "latest", "parameters": {"' + b"p" * 500_000 + b'": 1}}',
           "{\"dataset\": \"\U0001F600\"}".encode(), b"\xff\xfe", b'{"dataset": "latest"}' + b" " * 10]
    for value in NASTY_VALUES:
        for field in ("dataset", "reason", "requested_by", "parameters"):
            raw.append(json.dumps({"dataset": "latest", field: value}).encode())
        for name in ("seed", "time_budget_s", "exclude_columns", "primary_metric", "champion_model"):
            raw.append(json.dumps({"dataset": "latest", "parameters": {name: value}}).encode())
    return raw


def test_no_body_gets_a_5xx_and_every_refusal_is_audited(env, httpserver):
    """A property-style sweep: every nasty body is answered below 500, with a storable problem document."""
    from werkzeug import Response

    httpserver.expect_request(SUBMIT, method="POST").respond_with_handler(
        lambda request: Response(json.dumps({"Id": uuid.uuid4().hex}), content_type="application/json"))
    for i, body in enumerate(_bodies()):
        answer, record = env.call(body, client=f"10.{i // 250}.{i % 250}.7")
        assert answer.status < 500, (body[:80], answer)
        if answer.status >= 400:
            json.dumps(answer.body).encode("utf-8")  # no lone surrogate in what we send back
            assert len(answer.body["detail"]) < 1000, body[:80]
            assert env.stores.audit.get(record.id).outcome == "rejected", body[:80]
        for run in env.stores.runs.list():  # nothing accepted here stays in flight for the next body
            run.status = "Deployed"
            env.stores.runs.save(run)


def test_a_registry_folder_that_fails_its_pattern_is_not_sent_and_the_retrain_still_goes(env, httpserver, tmp_path):
    model = env.stores.models.register(run_id="r0", dataset_version=env.dataset.version,
                                       model_dir=str(tmp_path / "$(id)"), metrics={}, digest="sha256:" + "a" * 64)
    env.stores.models.set_live(model.version)
    accept(httpserver, "run-p")
    answer, _ = env.call({"dataset": "latest"})
    assert answer.status == 202, answer
    (request, _), = httpserver.log
    sent = request.get_json()["ParameterAssignments"]
    assert not {"champion_model", "champion_version", "champion_digest"} & set(sent)


def test_an_idempotency_key_the_store_cannot_hold_is_a_400_naming_the_header(env):
    answer, record = env.call({"dataset": "latest"}, headers={"Idempotency-Key": "k" * 300})
    assert_problem(answer, env.stores.audit.get(record.id), 400, "header Idempotency-Key: Idempotency-Key must be 1-")
