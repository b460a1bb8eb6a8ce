"""The completion handler, the reconcile timer and the manual override on real Azurite tables, with the pipeline
service's run API on a loopback server (v1 contract) and a recording blue/green deployer (the real local
scoring server's switching is tested in test_scoring_bluegreen.py, and the whole loop in tests/e2e)."""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest

from local.processes import free_port
from shared.adapters import storage
from shared.adapters.credentials import StaticTokenCredential, scoped_token
from shared.adapters.pipeline_client import PublishedPipelineClient
from shared.adapters.scoring import DeploymentError
from shared.bootstrap import build_stores
from shared.domain.promotion import PromotionPolicy
from shared.domain.records import RunRecord
from shared.domain.run_events import EventVerdict
from shared.services.manual_deploy import promote, rollback
from shared.services.on_run_completed import (
    DeliveredEvent,
    Deployment,
    EventNotConfirmed,
    RunCompletion,
    on_run_completed,
)
from shared.services.reconcile import ReconcileLimits, reconcile_runs
from shared.settings import Settings

# StaticTokenCredential("tok") hands out this token for the v1 (ARM) scope
ARM_TOKEN = scoped_token("tok", "https://management.azure.com/.default")

RUNS = "/pipelines/v1.0/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/" \
       "workspaces/w/PipelineRuns"
SUBMIT = RUNS + "/PipelineSubmit/p1"
COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
POLICY = PromotionPolicy(margin=0.005, floor=0.75)
WORKSPACE = "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"


class Endpoint:
    """Blue/green deployer double: records calls, keeps two slots, and a scorer that answers from the live one."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.digests: list[str] = []  # what each deploy was told the folder's content hash is
        self.slots = {"blue": None, "green": None}
        self.live = "blue"
        self.serve_override: str | None = None  # what the scorer claims to serve (a broken switch)

    def deploy(self, *, model_dir, version, smoke_records=None, digest=""):
        self.calls.append(("deploy", version, model_dir, len(smoke_records or [])))
        self.digests.append(digest)
        idle = "green" if self.live == "blue" else "blue"
        previous, previous_slot = self.slots[self.live], self.live
        self.slots[idle], self.live = str(version), idle
        return {"deployed": str(version), "previous": previous, "slot": idle, "previous_slot": previous_slot,
                "seconds": 0.1}

    def rollback(self, *, from_version=None):
        self.calls.append(("rollback",))
        if from_version is not None and str(self.slots[self.live]) != str(from_version):
            raise DeploymentError(f"v{from_version} is no longer live")
        other = "green" if self.live == "blue" else "blue"
        if self.slots[other] is None:
            raise DeploymentError("nothing to roll back to")
        came_from, self.live = self.slots[self.live], other
        self.serve_override = None
        return {"rolled_back_to": self.slots[other], "from": came_from, "slot": other}

    def score(self, records):
        return {"result": ["no"] * len(records), "model_version": self.serve_override or self.slots[self.live]}


@pytest.fixture
def parts(azurite, httpserver):
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(storage_connection=azurite, datasets_container=f"datasets{suffix}",
                        datasets_table=f"datasets{suffix}", audit_table=f"audit{suffix}", runs_table=f"runs{suffix}",
                        models_table=f"models{suffix}")
    storage.ensure_container(storage.blob_service(settings), settings.datasets_container)
    stores = build_stores(settings)
    endpoint = Endpoint()
    pipeline = PublishedPipelineClient(httpserver.url_for(SUBMIT), StaticTokenCredential("tok"), max_retries=0)
    return {"runs": stores.runs, "models": stores.models, "audit": stores.audit, "datasets": stores.datasets,
            "pipeline": pipeline, "deployer": endpoint, "scorer": endpoint}


def submitted(parts, run_id: str, *, age_s: float = 0.0, status: str = "Submitted") -> RunRecord:
    run = RunRecord(run_id=run_id, trigger_id="t-1", trigger="blob", reason="upload", dataset_version=1,
                    experiment="exp", submitted_at=time.time() - age_s, status=status)
    parts["runs"].create(run)
    return run


def digest_of(run_id: str) -> str:
    """The content digest the training step reports for the model of `run_id` (metrics `model_digest`)."""
    return "sha256:" + hashlib.sha256(run_id.encode()).hexdigest()


def serve_run(httpserver, run_id: str, *, status="Completed", auc=0.93, champion: dict | None = None):
    evaluation = {"percent": 10, "rows": 300, "challenger": {"auc": auc, "accuracy": 0.91, "rows": 300},
                  "champion": champion}
    body = {"Id": run_id, "Status": status,
            "Outputs": {"model": {"Uri": f"file:///models/{run_id}/model"},
                        "metrics": {"auc": auc, "accuracy": 0.91, "evaluation_slice": evaluation,
                                    "model_digest": digest_of(run_id)}}}
    if status == "Failed":
        body["Error"] = {"error": {"code": "UserError", "message": "training step exited with code 1"}}
    httpserver.expect_request(f"{RUNS}/{run_id}", method="GET", headers={"Authorization": f"Bearer {ARM_TOKEN}"}) \
        .respond_with_json(body)


def event(parts, run_id: str, *, kind=COMPLETED, status: str | None = None, event_id: str | None = None,
          topic: str = WORKSPACE):
    data = {"runId": run_id, "experimentName": "exp", "runType": "azureml.PipelineRun"}
    if status:
        data["runStatus"] = status
    return on_run_completed(DeliveredEvent(id=event_id or uuid.uuid4().hex, event_type=kind,
                                           subject=f"experiments/x/runs/{run_id}", data=data, topic=topic),
                            completion(parts))


def deployment(parts) -> Deployment:
    return Deployment(models=parts["models"], deployer=parts["deployer"], scorer=parts["scorer"],
                      datasets=parts["datasets"], audit=parts["audit"])


def completion(parts, workspace_id: str = WORKSPACE) -> RunCompletion:
    return RunCompletion(runs=parts["runs"], pipeline=parts["pipeline"], deployment=deployment(parts), policy=POLICY,
                         workspace_id=workspace_id)


def test_a_run_is_handled_once_however_often_and_in_whatever_order_its_events_arrive(parts, httpserver):
    submitted(parts, "run-1")
    serve_run(httpserver, "run-1")
    assert event(parts, "run-1", kind=CHANGED, status="Running").outcome == "ignored"  # early, ends nothing
    first = event(parts, "run-1", kind=CHANGED, status="Completed")
    assert first.outcome == "deployed" and first.model_version == 1
    again = event(parts, "run-1", event_id="same")  # RunCompleted after RunStatusChanged(Completed)
    late = event(parts, "run-1", kind=CHANGED, status="Running")  # out of order
    assert again.outcome == "duplicate" and late.outcome == "ignored"
    assert [c[0] for c in parts["deployer"].calls] == ["deploy"]
    assert parts["runs"].get("run-1").status == "Deployed" and parts["models"].live().version == 1
    decision = first.data["decision"]
    assert decision["outcome"] == "promoted" and "first model" in decision["reason"]
    assert first.data["deployment"]["slot"] == "green" and first.stages.keys() >= {"registered", "evaluated",
                                                                                    "deployed", "serving"}


def test_runs_it_did_not_start_and_non_run_events_are_ignored_and_recorded(parts):
    assert event(parts, "someone-elses").outcome == "ignored"
    other = on_run_completed(DeliveredEvent(id="e", event_type="Microsoft.Storage.BlobCreated", subject="s", data={},
                                            topic=WORKSPACE), completion(parts))
    assert other.outcome == "ignored" and "not an Azure ML run event" in other.detail
    assert {r.id for r in parts["audit"].list()} >= {other.id}


def test_a_failed_run_deploys_nothing(parts, httpserver):
    submitted(parts, "run-f")
    serve_run(httpserver, "run-f", status="Failed")
    record = event(parts, "run-f", kind=CHANGED, status="failed")  # statuses compare case-insensitively
    assert record.outcome == "failed" and parts["deployer"].calls == []
    assert parts["runs"].get("run-f").status == "Failed"
    assert "training step exited with code 1" in record.detail  # the pipeline's error, not the event's text


def test_a_forged_failed_for_a_running_run_changes_nothing_and_the_real_completion_still_deploys(parts, httpserver):
    submitted(parts, "run-1")
    serve_run(httpserver, "run-1", status="Running")
    forged = event(parts, "run-1", kind=CHANGED, status="Failed")
    assert forged.outcome == EventVerdict.REJECTED == "rejected_event"
    assert "the pipeline says the run is 'Running'" in forged.detail and "nothing changed" in forged.detail
    assert (forged.data["claimed_status"], forged.data["pipeline_status"]) == ("Failed", "Running")
    assert parts["runs"].get("run-1").status == "Submitted" and parts["models"].live() is None
    forged_completed = event(parts, "run-1", kind=COMPLETED)
    assert forged_completed.outcome == "rejected_event" and parts["deployer"].calls == []
    httpserver.clear_all_handlers()
    serve_run(httpserver, "run-1")  # the run really completes: its model is registered and deployed
    real = event(parts, "run-1")
    assert real.outcome == "deployed" and real.model_version == 1
    assert parts["runs"].get("run-1").status == "Deployed" and parts["models"].live().version == 1
    stored = {r.id: r.outcome for r in parts["audit"].list()}
    assert stored[forged.id] == stored[forged_completed.id] == "rejected_event"


def test_a_forged_failed_for_a_deployed_run_is_rejected(parts, httpserver):
    submitted(parts, "run-1")
    serve_run(httpserver, "run-1")
    assert event(parts, "run-1").outcome == "deployed"
    forged = event(parts, "run-1", kind=CHANGED, status="Canceled")
    assert forged.outcome == "rejected_event" and "ended 'Completed'" in forged.detail
    assert parts["runs"].get("run-1").status == "Deployed" and parts["models"].live().version == 1


def test_an_event_from_another_topic_is_ignored_without_asking_the_pipeline(parts, httpserver):
    submitted(parts, "run-1")
    other = WORKSPACE.replace("/workspaces/w", "/workspaces/someone-else")
    for topic in (other, "", "/subscriptions/s"):
        record = event(parts, "run-1", kind=CHANGED, status="Failed", topic=topic)
        assert record.outcome == EventVerdict.FOREIGN_TOPIC == "foreign_topic"
        assert "is not the workspace" in record.detail
    assert httpserver.log == [] and parts["runs"].get("run-1").status == "Submitted"
    serve_run(httpserver, "run-1")
    assert event(parts, "run-1", topic=WORKSPACE.upper() + "/").outcome == "deployed"  # ARM ids: any case


def test_without_a_configured_workspace_every_event_is_refused(parts):
    submitted(parts, "run-1")
    record = on_run_completed(DeliveredEvent(id="e", event_type=COMPLETED, subject="experiments/x/runs/run-1",
                                             data={"runId": "run-1"}, topic=WORKSPACE), completion(parts, ""))
    assert record.outcome == "foreign_topic" and "AZUREML_WORKSPACE_ID is not set" in record.detail
    assert parts["runs"].get("run-1").status == "Submitted"


def test_an_unreachable_pipeline_leaves_the_run_for_redelivery_and_reconcile(parts, httpserver):
    submitted(parts, "run-1", age_s=300)
    down = PublishedPipelineClient(f"http://127.0.0.1:{free_port()}{SUBMIT}", StaticTokenCredential("tok"),
                                   max_retries=0, timeout_s=5)
    with pytest.raises(EventNotConfirmed, match="could not confirm"):
        event({**parts, "pipeline": down}, "run-1", kind=CHANGED, status="Failed")
    record = next(r for r in parts["audit"].list() if r.run_id == "run-1")
    assert record.outcome == EventVerdict.UNCONFIRMED == "unconfirmed" and "reconcile" in record.detail
    assert parts["runs"].get("run-1").status == "Submitted"
    serve_run(httpserver, "run-1")  # the pipeline is back: the timer finishes the run from its own status
    summary = reconcile_runs(completion(parts), ReconcileLimits(min_age_s=60))
    assert [r["outcome"] for r in summary.data["runs"]] == ["deployed"]


def test_a_worse_challenger_is_kept_out_with_both_figures_recorded(parts, httpserver):
    submitted(parts, "run-1")
    serve_run(httpserver, "run-1", auc=0.93)
    assert event(parts, "run-1").outcome == "deployed"
    submitted(parts, "run-2")
    serve_run(httpserver, "run-2", auc=0.90, champion={"auc": 0.93, "accuracy": 0.91, "rows": 300, "version": 1,
                                                       "digest": digest_of("run-1")})
    kept = event(parts, "run-2")
    assert kept.outcome == "kept_champion" and "-0.0300" in kept.detail and "same_rows" in kept.detail
    assert kept.data["decision"]["champion"]["auc"] == 0.93 and kept.data["decision"]["challenger"]["auc"] == 0.90
    assert parts["runs"].get("run-2").status == "KeptChampion" and parts["models"].live().version == 1
    assert [c[0] for c in parts["deployer"].calls] == ["deploy"]  # the second model never reached the endpoint


def test_figures_of_a_champion_that_is_not_the_registered_one_are_not_used(parts, httpserver):
    """A run that scored other bytes under the live version's number (a swapped folder, or a caller-chosen one)
    does not get the same-rows comparison: the live model's own recorded figures decide."""
    submitted(parts, "run-1")
    serve_run(httpserver, "run-1", auc=0.93)
    assert event(parts, "run-1").outcome == "deployed"
    assert parts["models"].live().digest == digest_of("run-1")
    submitted(parts, "run-2")
    serve_run(httpserver, "run-2", auc=0.90, champion={"auc": 0.50, "rows": 300, "version": 1,
                                                       "digest": digest_of("someone-elses-folder")})
    kept = event(parts, "run-2")
    assert kept.outcome == "kept_champion" and "same_rows" not in kept.detail
    assert "content digest differs" in kept.detail and kept.data["decision"]["champion"]["auc"] == 0.93


def test_a_challenger_within_the_margin_is_promoted(parts, httpserver):
    submitted(parts, "run-1")
    serve_run(httpserver, "run-1", auc=0.93)
    event(parts, "run-1")
    submitted(parts, "run-2")
    serve_run(httpserver, "run-2", auc=0.928, champion={"auc": 0.93, "rows": 300, "version": 1,
                                                        "digest": digest_of("run-1")})
    assert event(parts, "run-2").outcome == "deployed"
    assert parts["models"].live().version == 2 and parts["models"].previous_live().version == 1


def test_a_switch_that_does_not_serve_the_new_model_is_rolled_back(parts, httpserver):
    submitted(parts, "run-1")
    serve_run(httpserver, "run-1")
    event(parts, "run-1")
    submitted(parts, "run-2")
    serve_run(httpserver, "run-2", auc=0.95, champion={"auc": 0.93, "rows": 300, "version": 1})
    parts["deployer"].serve_override = "1"  # the endpoint keeps answering with the old model
    record = event(parts, "run-2")
    assert record.outcome == "rolled_back" and "rolled back to v1" in record.detail
    assert [c[0] for c in parts["deployer"].calls] == ["deploy", "deploy", "rollback"]
    assert parts["runs"].get("run-2").status == "RolledBack" and parts["models"].live().version == 1


def test_reconcile_finishes_runs_whose_events_were_lost(parts, httpserver):
    limits = ReconcileLimits(min_age_s=60, run_timeout_s=3600, stale_handling_s=600)
    submitted(parts, "lost-ok", age_s=300)
    submitted(parts, "lost-failed", age_s=300)
    submitted(parts, "young", age_s=5)
    submitted(parts, "stuck", age_s=7200)
    submitted(parts, "crashed", age_s=900, status="Handling")
    serve_run(httpserver, "lost-ok", auc=0.93)
    serve_run(httpserver, "lost-failed", status="Failed")
    serve_run(httpserver, "stuck", status="Running")
    serve_run(httpserver, "crashed", auc=0.92, champion=None)
    summary = reconcile_runs(completion(parts), limits)
    outcomes = {r["run_id"]: r["outcome"] for r in summary.data["runs"]}
    assert outcomes["lost-ok"] == "deployed" and outcomes["lost-failed"] == "failed"
    assert outcomes["stuck"] == "failed" and "young" not in outcomes
    assert outcomes["crashed"] in ("deployed", "kept_champion")  # handled again after its handler died
    assert summary.data["counts"]["released"] == 1 and summary.data["counts"]["timed_out"] == 1
    assert "training step exited with code 1" in parts["runs"].get("lost-failed").detail
    assert "no completion within 3600 s" in parts["runs"].get("stuck").detail
    assert {r.status for r in parts["runs"].list() if r.run_id != "young"} <= {"Deployed", "Failed", "KeptChampion"}
    again = reconcile_runs(completion(parts), limits)
    assert again.data["runs"] == [] and again.outcome == "reconciled"  # nothing left: nothing done twice


def test_manual_promote_and_rollback_are_audited(parts, httpserver):
    for run_id, auc in (("run-1", 0.93), ("run-2", 0.935)):
        submitted(parts, run_id)
        serve_run(httpserver, run_id, auc=auc)
        event(parts, run_id)
    assert parts["models"].live().version == 2
    back = rollback(deployment(parts), requested_by="alice")
    assert back.outcome == "rolled_back" and "v1 serving again (instant switch)" in back.detail
    assert parts["models"].live().version == 1 and "alice" in back.source
    forward = promote(2, deployment(parts), requested_by="bob")
    assert forward.outcome == "promoted" and parts["models"].live().version == 2
    missing = promote(9, deployment(parts), requested_by="bob")
    assert missing.outcome == "failed" and "no registered model version 9" in missing.detail
    functions = [r.function for r in parts["audit"].list()]
    assert functions.count("promote") == 2 and functions.count("rollback") == 1


def test_rollback_without_history_says_so(parts):
    record = rollback(deployment(parts))
    assert record.outcome == "failed" and "nothing to roll back to" in record.detail


def test_the_model_digest_the_run_reports_is_registered_and_handed_to_the_deployer(parts, httpserver):
    digest = "sha256:" + "ab" * 32
    submitted(parts, "run-d")
    httpserver.expect_request(f"{RUNS}/run-d", method="GET").respond_with_json(
        {"Id": "run-d", "Status": "Completed", "Outputs": {"model": {"Uri": "file:///models/run-d/model"},
                                                           "metrics": {"auc": 0.93, "model_digest": digest}}})
    assert event(parts, "run-d").outcome == "deployed"
    assert parts["models"].get(1).digest == digest
    assert parts["deployer"].digests == [digest]
