"""The whole loop through the real local stack: Azurite, our Functions host running main.py, the local
pipeline endpoint (real training) and the scoring server, all as processes on loopback.

The stack is shared by the module; what a test needs to have happened first (a first model from an upload, an
HTTP retrain, a drift timer run) comes from module fixtures, which run once, at their first use, so every test
passes alone and in any order."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pandas as pd
import pytest
import requests
from azure.storage.blob import BlobServiceClient

from local.session import upload_file
from local.stack import start_on_free_ports
from shared.adapters.scoring import LocalScoringDeployer
from shared.bootstrap import build_stores
from shared.domain import schema
from shared.domain.validation import canonical_csv, content_hash
from shared.domain.webhook_signature import sign
from shared.settings import Settings
from tests.waiting import wait_for as _wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_on_free_ports(tmp_path_factory.mktemp("stack"), training_budget_s=3, blob_poll_s=0.5,
                            drift_schedule="0 0 0 1 1 *",
                            extra_settings={"MIN_ROWS": "200", "DRIFT_COOLDOWN_S": "0", "COALESCE_S": "1"})
    config = s.config
    stores = build_stores(Settings(storage_connection=config.connection_string))
    s.audit, s.runs, s.models, s.datasets = stores.audit, stores.runs, stores.models, stores.datasets
    # as the completion handler reads it: the answering deployment's version, from the endpoint's deployments
    slots = LocalScoringDeployer(config.scoring_url, s.secrets["scoring_admin_key"])
    s.scorer = slots.scorer(s.secrets["scoring_key"])
    yield s
    s.stop()



def wait_for(predicate, timeout=180, every=0.5, what="condition"):
    """Training runs take a while: the e2e defaults are longer."""
    return _wait_for(predicate, timeout=timeout, every=every, what=what)


def completion_for(stack, run_id):
    def find():
        done = [r for r in stack.audit.list() if r.trigger == "eventgrid" and r.run_id == run_id
                and r.outcome in ("deployed", "kept_champion", "rolled_back", "failed")]
        return done[0] if done else None
    return wait_for(find, what=f"completion of run {run_id}")


def fire_timer(stack):
    """Run the drift timer now through the host's admin API and return its finished audit record. A retrain it
    requests is `queued` for a moment when the outbox timer (every 2 s here) claims the request before the drift
    check's own submit: the record is then finished by the outbox's submit, so `queued` is waited through too."""
    before = {r.id for r in stack.audit.list() if r.trigger == "timer"}
    fire = requests.post(stack.config.host_url + "/admin/functions/drift_timer", json={"input": ""},
                         headers={"x-functions-key": stack.host_keys.master_key}, timeout=10)
    assert fire.status_code == 202, fire.text
    return wait_for(lambda: next((r for r in stack.audit.list() if r.trigger == "timer" and r.id not in before
                                  and r.outcome not in ("in_progress", "queued")), None), what="timer record")


def sample_records(csv_path, n=3):
    return pd.read_csv(csv_path, nrows=n)[list(schema.FEATURES)].to_dict(orient="records")


@pytest.fixture(scope="module")
def first_upload(stack, small_bank_csv):
    """The stack's first upload, followed to its completion: the first model (every test that needs a model or a
    dataset asks for this, so it always runs first on the fresh stack)."""
    source = upload_file(stack.config.connection_string, small_bank_csv, f"e2e-{uuid.uuid4().hex[:6]}.csv")
    upload = wait_for(lambda: next((r for r in stack.audit.list() if r.source == source
                                    and r.outcome not in ("in_progress", "queued")), None),
                      what="blob trigger record")  # queued first: the coalescing window (COALESCE_S=1)
    assert upload.outcome == "submitted", upload.detail
    completion = completion_for(stack, upload.run_id)
    # what was live and serving right then (a later test may deploy another model)
    return SimpleNamespace(upload=upload, completion=completion, live=stack.models.live(),
                           answer=stack.scorer.score(sample_records(small_bank_csv)))


@pytest.fixture(scope="module")
def http_retrain(stack, first_upload):
    """A signed HTTP retrain of the latest dataset, followed to its completion (a second registered model)."""
    key = stack.host_keys.function_keys["default"]
    payload = json.dumps({"dataset": "latest", "reason": "ci", "requested_by": "e2e"}).encode()
    ok = requests.post(stack.config.host_url + "/api/retrain", data=payload, params={"code": key}, timeout=30,
                       headers={"Content-Type": "application/json", **sign(stack.secrets["webhook_secret"], payload)})
    assert ok.status_code == 202, ok.text
    live_before = stack.models.live()
    return SimpleNamespace(answer=ok, live_before=live_before, completion=completion_for(stack, ok.json()["run_id"]))


@pytest.fixture(scope="module")
def first_timer(stack, first_upload):
    """The drift timer fired once with only a few scored records and no newer dataset."""
    return fire_timer(stack)


def test_blob_upload_runs_the_whole_loop_to_a_serving_model(stack, small_bank_csv, first_upload):
    upload, completion = first_upload.upload, first_upload.completion
    assert upload.trigger == "blob" and upload.dataset_version >= 1 and upload.run_id
    assert completion.outcome == "deployed", completion.detail
    assert {"run_completed", "registered", "deployed", "serving"} <= set(completion.stages)
    assert first_upload.live.version == completion.model_version
    answer = first_upload.answer
    assert answer["model_version"] == str(completion.model_version)
    assert len(answer["result"]) == 3 and set(answer["result"]) <= {"yes", "no"}
    assert stack.runs.get(upload.run_id).status == "Deployed"
    # one trace from the blob trigger to the deploy, across the submission and the completion event
    spans = [json.loads(line) for line in (stack.config.local_dir / "spans.jsonl").read_text().splitlines()]
    trace = {s["trace_id"] for s in spans if s["name"] == "run_completed"
             and s["attributes"].get("run_id") == upload.run_id}
    assert len(trace) == 1
    names = {s["name"] for s in spans if s["trace_id"] in trace}
    assert {"blob_upload", "dispatch", "submit_pipeline", "run_completed", "register_model", "evaluate",
            "deploy"} <= names  # the outbox timer's submission continues the upload's trace


def test_malformed_upload_is_quarantined_and_triggers_nothing(stack):
    runs_before = len(stack.runs.list())
    source = upload_file(stack.config.connection_string, _write(stack, b"age;job\n42;admin.;extra\n"),
                         f"broken-{uuid.uuid4().hex[:6]}.csv")
    record = wait_for(lambda: next((r for r in stack.audit.list() if r.source == source
                                    and r.outcome != "in_progress"), None), what="rejection record")
    assert record.outcome == "rejected"
    assert "malformed CSV at line 2: expected 2 fields (semicolon dialect), found 3" in record.detail
    blobs = BlobServiceClient.from_connection_string(stack.config.connection_string)
    container, _, path = record.data["quarantined_to"].partition("/")
    reason = json.loads(blobs.get_blob_client(container, path + ".reason.json").download_blob().readall())
    assert reason["errors"] == ["malformed CSV at line 2: expected 2 fields (semicolon dialect), found 3"]
    assert len(stack.runs.list()) == runs_before
    # the host is still healthy and serving HTTP
    assert requests.get(stack.config.host_url + "/", timeout=5).status_code == 200


def test_http_trigger_requires_a_key_and_submits_a_retrain(stack, http_retrain):
    url = stack.config.host_url + "/api/retrain"
    secret = stack.secrets["webhook_secret"]
    json_type = {"Content-Type": "application/json"}
    assert requests.post(url, json={"dataset": "latest"}, timeout=10).status_code == 401
    key = stack.host_keys.function_keys["default"]
    # the function key alone is not enough: the body must be signed with the webhook secret
    unsigned = requests.post(url, json={"dataset": "latest"}, headers={"x-functions-key": key}, timeout=10)
    assert unsigned.status_code == 401 and "X-Retrain-Signature" in unsigned.json()["detail"]
    bad = requests.post(url, data=b"{oops", headers={"x-functions-key": key, **json_type, **sign(secret, b"{oops")},
                        timeout=10)
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["detail"]
    ok = http_retrain.answer  # the signed request with the key in `code`, from the fixture
    body = ok.json()
    assert ok.headers["Location"] == f"/api/runs/{body['run_id']}"
    live_before, completion = http_retrain.live_before, http_retrain.completion
    # A model is live: the run scored it on the same held-out rows, and the decision says so with both figures.
    assert completion.outcome in ("deployed", "kept_champion"), completion.detail
    decision = completion.data["decision"]
    assert decision["champion"]["version"] == str(live_before.version) and "[basis: same_rows, " in completion.detail
    assert decision["champion"]["rows"] == decision["challenger"]["rows"] > 0
    http_record = next(r for r in stack.audit.list() if r.run_id == body["run_id"] and r.trigger == "http")
    assert http_record.outcome == "submitted" and http_record.data["requested_by"] == "e2e"
    assert http_record.data["reason"] == "ci"  # the caller's words stay in the audit; the run has the trigger kind
    run = requests.get(stack.config.host_url + ok.headers["Location"], headers={"x-functions-key": key}, timeout=10)
    expected = "Deployed" if completion.outcome == "deployed" else "KeptChampion"
    assert run.status_code == 200 and run.json()["status"] == expected and run.json()["reason"] == "http"
    missing = requests.get(stack.config.host_url + "/api/runs/nope", headers={"x-functions-key": key}, timeout=10)
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("application/problem+json")


def test_timer_detects_drift_and_retrains(stack, small_bank_csv, first_timer):
    live = wait_for(lambda: stack.models.live(), what="a live model")
    first = first_timer  # only a few scored records and no newer dataset yet
    assert first.outcome == "skipped" and first.detail.startswith("not enough data"), first.detail
    # New data from a different world: register it directly (no upload trigger), then fire the timer.
    frame = pd.read_csv(small_bank_csv)
    frame["age"] = frame["age"] + 25
    frame["euribor3m"] = frame["euribor3m"] * 3
    frame["nr.employed"] = frame["nr.employed"] - 300
    frame["campaign"] = frame["campaign"] * 4
    frame["duration"] = frame["duration"] * 2
    frame["pdays"] = 3
    frame["previous"] = frame["previous"] + 3
    frame["cons.conf.idx"] = frame["cons.conf.idx"] + 15
    for column in ("job", "education", "month", "day_of_week", "marital"):
        frame[column] = "unknown" if column != "month" else "dec"
    data = canonical_csv(frame)
    drifted = stack.datasets.register(data, content_hash=content_hash(data), rows=len(frame), columns=21,
                                      source_blob="test/drifted.csv", source_etag=uuid.uuid4().hex, dialect="comma")
    assert drifted.version > live.dataset_version
    second = fire_timer(stack)
    assert second.outcome == "submitted", second.detail
    assert second.dataset_version == drifted.version and second.detail.startswith("drift:")
    assert second.data["window"]["datasets"] == [drifted.version] and second.data["report"].endswith(".html")
    assert {"age", "euribor3m", "nr.employed"} <= set(second.data["drift"]["drifted_columns"])
    report = BlobServiceClient.from_connection_string(stack.config.connection_string).get_blob_client(
        *second.data["report"].split("/", 1)).download_blob().readall().decode()
    assert "<svg" in report and "euribor3m" in report
    completion = completion_for(stack, second.run_id)
    assert completion.outcome in ("deployed", "kept_champion"), completion.detail
    assert completion.data["decision"]["champion"] is not None
    assert stack.runs.get(second.run_id).reason == "drift"
    # on demand over HTTP: function key and signature required, the verdict in the answer, an audit record of its own
    url = stack.config.host_url + "/api/drift-check"
    key = {"x-functions-key": stack.host_keys.function_keys["default"]}
    assert requests.post(url, timeout=10).status_code == 401
    assert requests.post(url, headers=key, timeout=10).status_code == 401  # the function key alone is not enough
    on_demand = requests.post(url, headers={**key, **sign(stack.secrets["webhook_secret"], b"")}, timeout=60)
    assert on_demand.status_code == 200, on_demand.text
    body = on_demand.json()
    assert body["outcome"] in ("no_drift", "skipped", "submitted") and body["detail"]
    record = next(r for r in stack.audit.list() if r.id == body["audit_id"])
    assert (record.trigger, record.function, record.outcome) == ("http", "drift_http", body["outcome"])


def test_completion_ignores_foreign_runs_and_duplicate_events(stack, first_upload):
    key = stack.host_keys.system_keys["eventgrid_extension"]
    url = f"{stack.config.host_url}/runtime/webhooks/eventgrid"
    params = {"functionName": "run_completed", "code": key}
    validation = requests.post(url, params=params, headers={"aeg-event-type": "SubscriptionValidation"}, json=[{
        "id": "v1", "topic": "t", "subject": "", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2026-01-01T00:00:00Z", "data": {"validationCode": "abc-123"}, "dataVersion": "1"}], timeout=10)
    assert validation.json() == {"validationResponse": "abc-123"}
    assert requests.post(url, params={"functionName": "run_completed", "code": "wrong"}, json=[],
                         headers={"aeg-event-type": "Notification"}, timeout=10).status_code == 401

    def event(run_id):
        return [{"id": uuid.uuid4().hex, "topic": stack.app_settings()["AZUREML_WORKSPACE_ID"],
                 "subject": f"experiments/e/runs/{run_id}",
                 "eventType": "Microsoft.MachineLearningServices.RunCompleted", "eventTime": "2026-01-01T00:00:00Z",
                 "data": {"runId": run_id, "experimentName": "e"}, "dataVersion": "2", "metadataVersion": "1"}]

    foreign = f"foreign-{uuid.uuid4().hex[:6]}"
    r = requests.post(url, params=params, headers={"aeg-event-type": "Notification"}, json=event(foreign),
                      timeout=60)
    assert r.status_code == 202
    record = next(r for r in stack.audit.list() if r.run_id == foreign)
    assert record.outcome == "ignored" and "not a run this service submitted" in record.detail
    deployed = next(r for r in stack.runs.list() if r.status == "Deployed")
    r = requests.post(url, params=params, headers={"aeg-event-type": "Notification"}, json=event(deployed.run_id),
                      timeout=60)
    assert r.status_code == 202
    dup = [r for r in stack.audit.list() if r.run_id == deployed.run_id and r.outcome == "duplicate"]
    assert dup and stack.models.live() is not None


def _write(stack, data: bytes):
    path = stack.config.local_dir / f"upload-{uuid.uuid4().hex[:6]}.csv"
    path.write_bytes(data)
    return path


def test_manual_rollback_and_promote_switch_the_real_endpoint(stack, http_retrain, monkeypatch, capsys):
    from tools import cli

    monkeypatch.setenv("RETRAIN_LOCAL_DIR", str(stack.config.local_dir))
    live = wait_for(lambda: stack.models.live(), what="a live model")
    if stack.models.previous_live() is None:  # the earlier runs kept the champion: deploy another version by hand
        other = next(m for m in stack.models.list() if m.version != live.version)
        assert cli.main(["promote", str(other.version)]) == 0, capsys.readouterr().err
        live = stack.models.live()
    previous = stack.models.previous_live()
    assert cli.main(["rollback"]) == 0, capsys.readouterr().err
    assert "serving again (instant switch)" in capsys.readouterr().out
    assert stack.models.live().version == previous.version
    answer = stack.scorer.score(sample_records_from_registry(stack))
    assert answer["model_version"] == str(previous.version)
    assert cli.main(["promote", str(live.version)]) == 0
    assert stack.scorer.score(sample_records_from_registry(stack))["model_version"] == str(live.version)
    assert cli.main(["promote", "999"]) == 1 and "no registered model version 999" in capsys.readouterr().err
    assert cli.main(["history", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["function"] for r in rows if r["function"] in ("rollback", "promote")][-3:] == ["rollback", "promote",
                                                                                            "promote"]
    assert any(r["function"] == "run_completed" and r["challenger"] for r in rows)


def sample_records_from_registry(stack):
    dataset = stack.datasets.latest()
    import io

    return pd.read_csv(io.BytesIO(stack.datasets.read(dataset)), nrows=2)[list(schema.FEATURES)].to_dict(
        orient="records")


def test_status_cli_lists_one_line_per_trigger(stack, first_upload, http_retrain, first_timer, monkeypatch, capsys):
    from tools import cli

    monkeypatch.setenv("RETRAIN_LOCAL_DIR", str(stack.config.local_dir))
    assert cli.main(["status", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(stack.audit.list())
    triggers = {line["trigger"] for line in lines}
    assert {"blob", "http", "timer", "eventgrid"} <= triggers
    assert any(line["outcome"] == "deployed" and line["model_version"] for line in lines)
