"""Services against real Azurite storage and a loopback pipeline endpoint (pytest-httpserver)."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient

from shared.adapters import storage
from shared.adapters.credentials import StaticTokenCredential, scoped_token
from shared.adapters.outbox import Outbox
from shared.adapters.pipeline_client import PublishedPipelineClient
from shared.adapters.quarantine import Quarantine
from shared.bootstrap import build_stores
from shared.services.dispatch import DispatchPolicy, RetrainDispatch, dispatch
from shared.services.http_retrain import WebhookIntake, retrain_http
from shared.services.on_upload import UploadedBlob, UploadIntake, UploadLimits, on_upload
from shared.services.retrain import PipelineTarget
from shared.settings import Settings, SettingsError

# StaticTokenCredential("tok") hands out this token for the v1 (ARM) scope
ARM_TOKEN = scoped_token("tok", "https://management.azure.com/.default")

SUBMIT = "/pipelines/v1.0/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/" \
         "workspaces/w/PipelineRuns/PipelineSubmit/p1"


@pytest.fixture
def stores(azurite):
    suffix = uuid.uuid4().hex[:8]
    containers = {k: f"{k}{suffix}" for k in ("incoming", "datasets", "quarantine")}
    settings = Settings(storage_connection=azurite, datasets_container=containers["datasets"],
                        datasets_table=f"datasets{suffix}", audit_table=f"audit{suffix}", runs_table=f"runs{suffix}",
                        models_table=f"models{suffix}")
    blobs = storage.blob_service(settings)
    for name in containers.values():
        storage.ensure_container(blobs, name)
    built = build_stores(settings)
    outbox = Outbox(storage.ensure_table(storage.table_service(settings), f"outbox{suffix}"))
    return {"blobs": blobs, "containers": containers, "quarantine": Quarantine(blobs, containers["quarantine"]),
            "datasets": built.datasets, "audit": built.audit, "runs": built.runs, "models": built.models,
            "outbox": outbox}


@pytest.fixture
def pipeline(httpserver):
    return PublishedPipelineClient(httpserver.url_for(SUBMIT), StaticTokenCredential("tok"), max_retries=0)


TARGET = PipelineTarget(experiment="exp", datastore="workspaceblobstore", data_input="training_data", budget_s=9)
LIMITS = UploadLimits(min_rows=100, max_bytes=50_000_000)


def upload(stores, name: str, data: bytes) -> UploadedBlob:
    container = stores["containers"]["incoming"]
    client = stores["blobs"].get_blob_client(container, name)
    props = client.upload_blob(data, overwrite=True)
    return UploadedBlob(name=f"{container}/{name}", data=data, etag=props["etag"].strip('"'),
                        uploaded_at=props["last_modified"].timestamp())


def test_valid_upload_registers_a_version_and_posts_it(stores, pipeline, httpserver, small_bank_csv):
    data = small_bank_csv.read_bytes()
    blob = upload(stores, "good.csv", data)
    httpserver.expect_oneshot_request(SUBMIT, method="POST", headers={"Authorization": f"Bearer {ARM_TOKEN}"}) \
        .respond_with_json({"Id": "run-1", "Status": {"RunStatus": "NotStarted"}})
    record = on_upload(blob, _intake(stores, pipeline))
    httpserver.check_assertions()
    sent = json.loads(httpserver.log[0][0].data)
    assert sent["ExperimentName"] == "exp"
    assert sent["ParameterAssignments"]["dataset_version"] == "1"
    assert sent["ParameterAssignments"]["trigger_id"] == record.id
    assert sent["DataPathAssignments"] == {"training_data": {
        "DataStoreName": "workspaceblobstore",
        "RelativePath": "bankmarketing/v1/data.csv"}}
    assert record.outcome == "submitted" and record.run_id == "run-1" and record.dataset_version == 1
    assert {"uploaded", "seen", "validated", "registered", "posted", "accepted"} <= set(record.stages)
    saved = stores["audit"].get(record.id)
    assert saved.outcome == "submitted" and saved.stages == record.stages
    version = stores["datasets"].get(1)
    assert version.rows == len(pd.read_csv(small_bank_csv)) and version.content_hash.startswith("sha256:")
    stored = stores["datasets"].read(version)
    assert stored.splitlines()[0].decode() == data.splitlines()[0].decode()
    assert stores["runs"].get("run-1").dataset_version == 1


def test_a_refused_submit_is_retried_from_the_outbox_and_a_retried_trigger_adds_nothing(stores, pipeline,
                                                                                           httpserver, small_bank_csv):
    blob = upload(stores, "retry.csv", small_bank_csv.read_bytes())
    httpserver.expect_oneshot_request(SUBMIT).respond_with_json({"error": {"code": "x"}}, status=500)
    record = on_upload(blob, _intake(stores, pipeline))
    assert record.outcome == "queued" and "service error 500" in record.detail and "retrying in" in record.detail
    again = on_upload(blob, _intake(stores, pipeline))  # host retry
    assert again.outcome == "duplicate" and "already registered and queued" in again.detail
    assert len(stores["datasets"].list()) == 1 and len(stores["outbox"].list()) == 1
    # the 500 may have started a run: the retry lists the pipeline's runs first (none carries this trigger id)
    httpserver.expect_oneshot_request(SUBMIT.replace("/PipelineSubmit/", "/Pipeline/"), method="GET") \
        .respond_with_json([])
    httpserver.expect_oneshot_request(SUBMIT).respond_with_json({"Id": "run-2"})
    later = time.time() + 3600
    assert dispatch(_retrain(stores, pipeline), now=later).startswith("submitted run-2")
    done = stores["audit"].get(record.id)
    assert done.outcome == "submitted" and done.run_id == "run-2" and "after 2 attempts" in done.detail


def test_the_same_bytes_under_another_name_or_dialect_are_a_duplicate_with_no_run(stores, pipeline, httpserver,
                                                                                    small_bank_csv):
    data = small_bank_csv.read_bytes()
    httpserver.expect_oneshot_request(SUBMIT).respond_with_json({"Id": "run-d"})
    first = on_upload(upload(stores, "a.csv", data), _intake(stores, pipeline))
    assert first.outcome == "submitted"
    semicolons = pd.read_csv(small_bank_csv).to_csv(sep=";", index=False).encode()
    for name, body in (("copy.csv", data), ("semicolon.csv", semicolons)):
        record = on_upload(upload(stores, name, body), _intake(stores, pipeline))
        assert record.outcome == "duplicate" and record.detail.startswith("duplicate of v1"), record.detail
    assert len(stores["datasets"].list()) == 1 and len(httpserver.log) == 1 and len(stores["outbox"].list()) == 1


def test_uploads_within_the_window_coalesce_into_one_retrain_of_the_newest(stores, pipeline, httpserver,
                                                                              small_bank_csv):
    frame = pd.read_csv(small_bank_csv)
    records = [on_upload(upload(stores, f"part{i}.csv", frame.iloc[i * 100:].to_csv(index=False).encode()),
                         _intake(stores, pipeline, coalesce_s=30))
               for i in range(3)]
    assert [r.outcome for r in records] == ["queued"] * 3 and httpserver.log == []
    outcomes = [stores["audit"].get(r.id) for r in records]
    assert [o.outcome for o in outcomes[:2]] == ["superseded", "superseded"]
    assert "superseded by v2" in outcomes[0].detail and "superseded by v3" in outcomes[1].detail
    httpserver.expect_oneshot_request(SUBMIT).respond_with_json({"Id": "run-c"})
    assert dispatch(_retrain(stores, pipeline), now=time.time() + 31).startswith("submitted run-c")
    assert json.loads(httpserver.log[0][0].data)["ParameterAssignments"]["dataset_version"] == "3"


def test_malformed_upload_is_quarantined_with_a_reason_and_not_posted(stores, pipeline, httpserver):
    bad = b"age,job\n1,2,3\n"
    blob = upload(stores, "bad.csv", bad)
    record = on_upload(blob, _intake(stores, pipeline))
    assert httpserver.log == []
    assert record.outcome == "rejected" and record.detail.startswith("rejected: malformed CSV at line 2")
    where = record.data["quarantined_to"]
    container, _, path = where.partition("/")
    blobs: BlobServiceClient = stores["blobs"]
    assert blobs.get_blob_client(container, path).download_blob().readall() == bad
    reason = json.loads(blobs.get_blob_client(container, path + ".reason.json").download_blob().readall())
    assert reason["errors"] == ["malformed CSV at line 2: expected 2 fields (comma dialect), found 3"]
    assert reason["audit_id"] == record.id
    incoming = [b.name for b in blobs.get_container_client(stores["containers"]["incoming"]).list_blobs()]
    assert "bad.csv" not in incoming
    assert stores["datasets"].list() == []


def test_concurrent_registrations_get_distinct_versions(stores, small_bank_csv):
    data = small_bank_csv.read_bytes()[:5000]
    versions, errors = [], []

    def register(i):
        try:
            versions.append(stores["datasets"].register(data, content_hash="h", rows=1, columns=21,
                                                        source_blob=f"in/{i}", source_etag=str(i),
                                                        dialect="comma").version)
        except Exception as exc:  # pragma: no cover - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]


def test_run_claim_happens_once(stores):
    from shared.domain.records import RunRecord

    stores["runs"].create(RunRecord(run_id="r1", trigger_id="t", trigger="blob", reason="upload",
                                    dataset_version=1, experiment="e", submitted_at=1.0))
    results = []
    threads = [threading.Thread(target=lambda: results.append(stores["runs"].claim("r1"))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert stores["runs"].claim("unknown") is None


def test_http_retrain_resolves_latest_and_validates(stores, pipeline, httpserver, small_bank_csv):
    s = _retrain(stores, pipeline)
    answer, _ = retrain_http(b'{"dataset": "latest"}', WebhookIntake(None, s))
    assert answer.status == 404 and "upload a file first" in answer.body["detail"]
    stores["datasets"].register(small_bank_csv.read_bytes(), content_hash="h", rows=3000, columns=21,
                                source_blob="x", source_etag="1", dialect="comma")
    httpserver.expect_oneshot_request(SUBMIT).respond_with_json({"Id": "run-h"})
    answer, record = retrain_http(b'{"dataset": "latest", "reason": "ci", "requested_by": "pipeline-7"}',
                                  WebhookIntake(None, s))
    assert answer.status == 202 and answer.body["run_id"] == "run-h" and answer.body["dataset_version"] == 1
    assert stores["audit"].get(record.id).outcome == "submitted"
    for body, status, text in [(b'{"dataset": "latest", "parameters": {"seed": "x"}}', 400,
                                "parameters.seed: must be an integer; got 'x'"),
                               (b'{"dataset": "latest", "parameters": {"trigger_id": "x"}}', 400,
                                "parameters.trigger_id is set by the service"),
                               (b"{not json", 400, "not valid JSON"), (b"[]", 400, "JSON object"),
                               (b"{}", 400, "'dataset' is required"), (b'{"dataset": "v9"}', 404, "does not exist"),
                               (b'{"dataset": "abc"}', 400, 'must be "latest"')]:
        answer, record = retrain_http(body, WebhookIntake(None, s))
        assert answer.status == status and text in answer.body["detail"], (body, answer)
        assert stores["audit"].get(record.id).outcome == "rejected"


def _retrain(stores, pipeline, coalesce_s: float = 0.0) -> RetrainDispatch:
    return RetrainDispatch(outbox=stores["outbox"], runs=stores["runs"], pipeline=pipeline,
                           datasets=stores["datasets"], audit=stores["audit"], models=stores["models"], target=TARGET,
                           policy=DispatchPolicy(coalesce_s=coalesce_s))


def _intake(stores, pipeline, coalesce_s: float = 0.0) -> UploadIntake:
    return UploadIntake(limits=LIMITS, quarantine=stores["quarantine"],
                        retrain=_retrain(stores, pipeline, coalesce_s=coalesce_s))


class RecordingDeployer:
    def __init__(self):
        self.calls = []

    def deploy(self, **kwargs):
        self.calls.append(kwargs)
        return {"deployed": kwargs["version"]}


def _completion(stores, pipeline, deployer, scorer, event_type, data, subject="experiments/e/runs/r"):
    from shared.services.on_run_completed import DeliveredEvent, Deployment, RunCompletion, on_run_completed

    workspace = "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"
    deployment = Deployment(models=stores["models"], deployer=deployer, scorer=scorer, datasets=stores["datasets"],
                            audit=stores["audit"])
    return on_run_completed(DeliveredEvent(id=uuid.uuid4().hex, event_type=event_type, subject=subject, data=data,
                                           topic=workspace),
                            RunCompletion(runs=stores["runs"], pipeline=pipeline, deployment=deployment,
                                          workspace_id=workspace))


def test_failed_run_is_recorded_and_nothing_is_deployed(stores, pipeline, httpserver):
    from shared.domain.records import RunRecord

    stores["runs"].create(RunRecord(run_id="rf", trigger_id="t", trigger="blob", reason="upload",
                                    dataset_version=1, experiment="e", submitted_at=1.0))
    deployer = RecordingDeployer()
    httpserver.expect_request(SUBMIT.replace("/PipelineSubmit/p1", "/rf"), method="GET").respond_with_json(
        {"Id": "rf", "Status": "Failed", "Error": {"error": {"code": "UserError", "message": "OOM in step train"}}})
    record = _completion(stores, pipeline, deployer, None, "Microsoft.MachineLearningServices.RunStatusChanged",
                         {"runId": "rf", "runStatus": "Failed", "runProperties": {"error": "forged text"}})
    assert record.outcome == "failed" and "OOM in step train" in record.detail and "nothing deployed" in record.detail
    assert "forged text" not in record.detail  # the error comes from the pipeline's run GET, not the event
    assert deployer.calls == [] and len(httpserver.log) == 1
    assert stores["runs"].get("rf").status == "Failed"
    assert stores["models"].live() is None
    again = _completion(stores, pipeline, deployer, None, "Microsoft.MachineLearningServices.RunCompleted",
                        {"runId": "rf"})
    assert again.outcome == "rejected_event"  # the pipeline says it failed: a RunCompleted for it is not believed
    late = _completion(stores, pipeline, deployer, None, "Microsoft.MachineLearningServices.RunStatusChanged",
                       {"runId": "rf", "runStatus": "Failed"})
    assert late.outcome == "duplicate" and stores["runs"].get("rf").status == "Failed"


def test_running_status_and_foreign_runs_are_ignored_but_recorded(stores, pipeline):
    deployer = RecordingDeployer()
    running = _completion(stores, pipeline, deployer, None, "Microsoft.MachineLearningServices.RunStatusChanged",
                          {"runId": "x", "runStatus": "Running"})
    foreign = _completion(stores, pipeline, deployer, None, "Microsoft.MachineLearningServices.RunCompleted",
                          {"runId": "not-ours"})
    other = _completion(stores, pipeline, deployer, None, "Microsoft.Storage.BlobCreated", {})
    assert [r.outcome for r in (running, foreign, other)] == ["ignored"] * 3
    assert "not a run this service submitted" in foreign.detail
    assert {r.id for r in stores["audit"].list()} == {running.id, foreign.id, other.id}
    assert deployer.calls == []


def test_azure_mode_posts_with_a_token_for_the_management_scope(azurite, httpserver, monkeypatch):
    """bootstrap in azure mode: DefaultAzureCredential (replaced here: Azure AD is unreachable) feeds the client."""
    import shared.bootstrap as bootstrap

    class Recorder:
        scopes: list = []

        def get_token(self, *scopes, **kwargs):
            from azure.core.credentials import AccessToken

            Recorder.scopes.append(scopes)
            return AccessToken("aad-abc", 9999999999)

    monkeypatch.setattr(bootstrap, "azure_credential", lambda: Recorder())
    env = {"RETRAIN_MODE": "azure", "AzureWebJobsStorage": azurite, "PIPELINE_ENDPOINT_URL": httpserver.url_for(SUBMIT),
           "PIPELINE_KIND": "published", "AUDIT_TABLE": "auditazure", "RUNS_TABLE": "runsazure"}
    with pytest.raises(SettingsError, match="AZURE_SUBSCRIPTION_ID"):
        Settings.from_env(env)
    settings = Settings.from_env({**env, "AZURE_SUBSCRIPTION_ID": "sub", "AZURE_RESOURCE_GROUP": "rg",
                                  "AZUREML_WORKSPACE_NAME": "ws", "AZUREML_ONLINE_ENDPOINT": "bank-ep"})
    services = bootstrap.build(settings)
    httpserver.expect_oneshot_request(SUBMIT, method="POST", headers={"Authorization": "Bearer aad-abc"}) \
        .respond_with_json({"Id": "azure-run"})
    assert services.pipeline.submit(experiment="e", parameters={}).run_id == "azure-run"
    assert Recorder.scopes == [("https://management.azure.com/.default",)]
    from shared.adapters.azure_online import AzureOnlineDeployer

    assert isinstance(services.deployer, AzureOnlineDeployer)  # built offline: no call until a deploy
    assert services.deployer.endpoint_name == "bank-ep" and Recorder.scopes == [("https://management.azure.com/.default",)]


def test_batch_endpoint_kind_builds_the_v2_client(azurite, monkeypatch):
    import shared.bootstrap as bootstrap
    from shared.adapters.pipeline_client import BatchEndpointPipelineClient
    from shared.settings import SettingsError

    monkeypatch.setattr(bootstrap, "azure_credential", lambda: StaticTokenCredential("t"))
    env = {"RETRAIN_MODE": "azure", "AzureWebJobsStorage": azurite, "PIPELINE_KIND": "batch-endpoint",
           "PIPELINE_ENDPOINT_URL": "https://train.westeurope.inference.ml.azure.com/jobs",
           "AZURE_SUBSCRIPTION_ID": "s", "AZURE_RESOURCE_GROUP": "r", "AZUREML_WORKSPACE_NAME": "w"}
    with pytest.raises(SettingsError, match="AZUREML_WORKSPACE_ID"):
        Settings.from_env(env)
    env["AZUREML_WORKSPACE_ID"] = ("/subscriptions/s/resourceGroups/r/providers/"
                                   "Microsoft.MachineLearningServices/workspaces/w")
    services = bootstrap.build(Settings.from_env(env))
    assert isinstance(services.pipeline.inner, BatchEndpointPipelineClient)  # wrapped: job outputs via MLClient
    with pytest.raises(SettingsError, match="PIPELINE_KIND"):
        Settings.from_env({**env, "PIPELINE_KIND": "v3"})


def test_concurrent_uploads_of_the_same_rows_register_one_version(stores, pipeline, httpserver, small_bank_csv):
    data = small_bank_csv.read_bytes()
    semicolons = pd.read_csv(small_bank_csv).to_csv(sep=";", index=False).encode()
    blobs = [upload(stores, f"same-{i}.csv", data if i % 2 else semicolons) for i in range(6)]
    records = []
    threads = [threading.Thread(target=lambda b=b: records.append(on_upload(
        b, _intake(stores, pipeline, coalesce_s=60)))) for b in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stores["datasets"].list()) == 1
    assert sorted(r.outcome for r in records) == ["duplicate"] * 5 + ["queued"]
