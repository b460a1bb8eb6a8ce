"""Black box, against the running local stack: run events are confirmed with the pipeline before a run changes, events
from another topic are ignored, and an upload whose name has dot segments is quarantined under the name's hash.

Events are posted as Event Grid would, to the host's Event Grid webhook with the extension's system key (which is
exactly what a forger holding that key can do)."""

from __future__ import annotations

import hashlib
import json
import uuid

import pandas as pd
import pytest
import requests
from azure.storage.blob import BlobServiceClient

from shared.bootstrap import build_stores
from shared.domain.validation import canonical_csv
from shared.settings import Settings
from tests.e2e.api_stack import start_api_stack
from tests.raw_blob import put_raw
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
ENDED = ("deployed", "kept_champion", "rolled_back", "failed")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # a training budget long enough that a forged event reliably arrives while the run is still going
    s = start_api_stack(tmp_path_factory.mktemp("events-stack"), budget_s=8, MIN_ROWS="200", COALESCE_S="0")
    s.models = build_stores(Settings(storage_connection=s.config.connection_string)).models
    s.blobs = BlobServiceClient.from_connection_string(s.config.connection_string)
    yield s
    s.stop()


def post_event(stack, run_id: str, *, status: str, topic: str | None = None) -> tuple[requests.Response, str]:
    key = stack.host_keys.system_keys["eventgrid_extension"]
    event_id = uuid.uuid4().hex
    event = {"id": event_id, "topic": stack.app_settings()["AZUREML_WORKSPACE_ID"] if topic is None else topic,
             "subject": f"experiments/e/runs/{run_id}", "eventType": STATUS_CHANGED,
             "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "2", "metadataVersion": "1",
             "data": {"runId": run_id, "experimentName": "bankmarketing-retrain", "runStatus": status,
                      "runProperties": {"error": "forged: training crashed"}}}
    return requests.post(f"{stack.config.host_url}/runtime/webhooks/eventgrid",
                         params={"functionName": "run_completed", "code": key},
                         headers={"aeg-event-type": "Notification"}, json=[event], timeout=60), event_id


def event_record(stack, run_id: str, outcome: str):
    return wait_for(lambda: next((r for r in stack.audit.list() if r.trigger == "eventgrid" and r.run_id == run_id
                                  and r.outcome == outcome), None), what=f"{outcome} record for {run_id}")


@pytest.fixture(scope="module")
def running(stack, small_bank_csv) -> str:
    """A run submitted from a real upload, caught while the pipeline still runs it."""
    data = canonical_csv(pd.read_csv(small_bank_csv).head(1500))
    name = f"sec-{uuid.uuid4().hex[:6]}.csv"
    stack.blobs.get_blob_client("incoming", name).upload_blob(data)
    upload = wait_for(lambda: next((r for r in stack.audit.list() if r.source == f"incoming/{name}" and r.run_id),
                                   None), timeout=120, every=0.2, what="the upload's run")
    return upload.run_id


def test_a_forged_failed_for_a_running_run_changes_nothing_and_the_run_still_completes(stack, running):
    answer, _ = post_event(stack, running, status="failed")
    assert answer.status_code == 202, answer.text
    forged = event_record(stack, running, "rejected_event")
    assert forged.data["claimed_status"] == "failed" and forged.data["pipeline_status"] != "Failed"
    assert "nothing changed" in forged.detail and "forged" not in forged.detail
    assert stack.runs.get(running).status != "Failed"
    done = wait_for(lambda: next((r for r in stack.audit.list() if r.trigger == "eventgrid" and r.run_id == running
                                  and r.outcome in ENDED), None), timeout=240, every=0.5, what="the real completion")
    assert done.outcome in ("deployed", "kept_champion"), done.detail  # the trained model was not dropped
    assert stack.runs.get(running).status in ("Deployed", "KeptChampion")
    assert any(m.run_id == running for m in stack.models.list())


def test_an_event_from_another_topic_is_ignored_and_recorded(stack, running):
    other = stack.app_settings()["AZUREML_WORKSPACE_ID"].replace("/workspaces/local-ws", "/workspaces/attacker")
    answer, event_id = post_event(stack, running, status="Failed", topic=other)
    assert answer.status_code == 202, answer.text
    record = wait_for(lambda: next((r for r in stack.audit.list() if r.data.get("event_id") == event_id), None),
                      what="the foreign event's record")
    assert record.outcome == "foreign_topic" and record.trigger == "eventgrid"
    assert "is not the workspace" in record.detail and "attacker" in record.detail
    assert record.run_id in (None, "")  # nothing in an unattributed event is trusted, not even its run id
    assert stack.runs.get(running).status != "Failed"  # whatever stage it is in, not failed by this event


def test_an_upload_named_with_dot_segments_is_quarantined_under_its_hash(stack):
    name = f"up-{uuid.uuid4().hex[:6]}/../b.csv"
    assert put_raw(stack.blobs, "incoming", name, b"age,job\n1,admin.\n") == 201
    record = wait_for(lambda: next((r for r in stack.audit.list() if r.trigger == "blob"
                                    and r.data.get("name_problem") and r.source == f"incoming/{name}"), None),
                      timeout=60, what="the refused upload's record")
    digest = hashlib.sha256(name.encode()).hexdigest()
    assert record.outcome == "rejected" and record.data["name_problem"] == "dot_segment"
    assert record.data["quarantined_to"] == f"quarantine/rejected/{digest}/{record.id}"
    kept = stack.blobs.get_blob_client("quarantine", f"rejected/{digest}/{record.id}")
    assert kept.download_blob().readall() == b""  # the host did not read it through a normalised URL
    assert kept.get_blob_properties().metadata["blob_name"] == name
    reason = json.loads(stack.blobs.get_blob_client("quarantine", f"rejected/{digest}/{record.id}.reason.json")
                        .download_blob().readall())
    assert reason["problem"] == "dot_segment" and reason["blob_name_sha256"] == digest
    quarantined = [b.name for b in stack.blobs.get_container_client("quarantine").list_blobs()]
    assert not [q for q in quarantined if q.endswith("b.csv") or name in q]  # the raw name is in no path
    incoming = [b.name for b in stack.blobs.get_container_client("incoming").list_blobs()]
    assert name in incoming and "b.csv" not in incoming  # left in place; no blob reached by a normalised URL
