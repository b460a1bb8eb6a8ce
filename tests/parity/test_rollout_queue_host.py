"""Issue 16, "completion answers in seconds", on the real local Functions host: the project's own `run_completed`
and rollout queue triggers (tests/fixtures/rollout_app) with a deployment that takes longer than Event Grid's
answer window and than host.json `functionTimeout`.

Event Grid waits 30 s for an answer, then queues the event for redelivery (10 s, 30 s, 1 min, 5 min, ... up to
24 h): https://learn.microsoft.com/azure/event-grid/delivery-and-retry. A queue-triggered try that runs past
functionTimeout fails and its message is visible again after `visibilityTimeout`
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages,
local/functions_host/queue_trigger.py)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import requests
from azure.storage.blob import BlobServiceClient

from local.functions_host.keys import load_or_create_keys
from local.processes import PROJECT_ROOT, python_argv, start_on_free_ports
from local.stack import eventgrid_webhook_url
from shared.bootstrap import build_stores
from shared.domain.outcomes import Outcome, RunStatus
from shared.domain.records import RunRecord
from shared.settings import Settings
from tests.integration.test_completion_azurite import SUBMIT, WORKSPACE, serve_run
from tests.waiting import wait_for

APP = PROJECT_ROOT / "tests" / "fixtures" / "rollout_app"
EVENT_GRID_ANSWER_S = 30  # Event Grid's wait for an answer before it queues the event for redelivery
FUNCTION_TIMEOUT_S = 4  # tests/fixtures/rollout_app/host.json functionTimeout
DEPLOY_S = 36  # longer than both: the deployment outlives several tries


def blob_names(conn: str, container: str, prefix: str) -> list[str]:
    box = BlobServiceClient.from_connection_string(conn).get_container_client(container)
    return [b.name for b in box.list_blobs(name_starts_with=prefix)]


def test_a_rollout_slower_than_event_grid_and_function_timeout_is_answered_at_once_and_switches_once(
        azurite, httpserver, tmp_path: Path):
    tag = uuid.uuid4().hex[:8]
    tables = {"AUDIT_TABLE": f"audit{tag}", "RUNS_TABLE": f"runs{tag}", "MODELS_TABLE": f"models{tag}",
              "DATASETS_TABLE": f"datasets{tag}", "OUTBOX_TABLE": f"outbox{tag}", "WEBHOOK_TABLE": f"webhook{tag}"}
    settings = Settings(storage_connection=azurite, audit_table=tables["AUDIT_TABLE"], runs_table=tables["RUNS_TABLE"],
                        models_table=tables["MODELS_TABLE"], datasets_table=tables["DATASETS_TABLE"])
    stores = build_stores(settings)
    run_id = f"run-{tag}"
    stores.runs.create(RunRecord(run_id=run_id, trigger_id="t-1", trigger="blob", reason="upload", dataset_version=1,
                                 experiment="exp", submitted_at=time.time()))
    serve_run(httpserver, run_id)  # the pipeline's run GET confirms Completed and names the model output

    local_dir = tmp_path / "local"
    keys = load_or_create_keys(local_dir)
    env = {"AzureWebJobsStorage": azurite, "RETRAIN_LOCAL_DIR": str(local_dir), **tables,
           "AzureFunctionsJobHost__id": f"rollout-{tag}", "FUNCTIONS_HOST_SHUTDOWN_TIMEOUT_S": "5",
           "ROLLOUT_QUEUE": f"rollouts{tag}", "PIPELINE_ENDPOINT_URL": httpserver.url_for(SUBMIT),
           "AZUREML_WORKSPACE_ID": WORKSPACE, "SCORING_URL": "http://127.0.0.1:9",
           "ENDPOINT_CONTAINER": f"endpoint{tag}", "SLOW_DEPLOY_S": str(DEPLOY_S)}
    argv = lambda ports: python_argv("local.functions_host", "--script-root", str(APP), "--port", str(ports[0]),  # noqa: E731
                                     "--settings", str(APP / "rollout.settings.json"))
    host, (port,) = start_on_free_ports("rollout-host", 1, argv, log_dir=tmp_path, env=env, timeout=30)
    try:
        event = {"id": uuid.uuid4().hex, "topic": WORKSPACE, "subject": f"experiments/x/runs/{run_id}",
                 "eventType": "Microsoft.MachineLearningServices.RunCompleted", "eventTime": "2026-12-07T05:00:00Z",
                 "data": {"runId": run_id, "experimentName": "exp", "runType": "azureml.PipelineRun"},
                 "dataVersion": "", "metadataVersion": "1"}
        url = eventgrid_webhook_url(f"http://127.0.0.1:{port}", keys.system_keys["eventgrid_extension"])
        started = time.monotonic()
        answer = requests.post(url, json=[event], headers={"aeg-event-type": "Notification"},
                               timeout=EVENT_GRID_ANSWER_S)  # Event Grid would stop waiting here
        answered_s = time.monotonic() - started
        assert answer.status_code == 202, answer.text  # the extension accepted it: success for Event Grid
        assert answered_s < FUNCTION_TIMEOUT_S < DEPLOY_S and EVENT_GRID_ANSWER_S < DEPLOY_S
        assert stores.runs.get(run_id).status == RunStatus.HANDLING  # claimed and recorded before the answer

        run = wait_for(lambda: (r := stores.runs.get(run_id)) and r.status != RunStatus.HANDLING and r,
                       timeout=DEPLOY_S + 60, every=0.5, what="the queued rollout to finish")
        assert run.status == RunStatus.DEPLOYED and run.model_version == 1, run.detail
        (record,) = [r for r in stores.audit.list() if r.run_id == run_id]
        assert record.outcome == Outcome.DEPLOYED and record.data["rollout_tries"] >= 2  # tries were killed
        assert "Timeout value of 00:00:04 was exceeded by function: Functions.rollout_queue" in \
            Path(host.log_path).read_text(errors="replace")
        switches = blob_names(azurite, env["ENDPOINT_CONTAINER"], "switches/")
        assert len(switches) == 1  # the traffic switched once, though the rollout was tried several times
        assert len(stores.models.list()) == 1  # registered once
        print(f"answered in {answered_s:.2f} s; rollout tries {record.data['rollout_tries']}; deploy calls "
              f"{len(blob_names(azurite, env['ENDPOINT_CONTAINER'], 'deploy-calls/'))}; switches {len(switches)}")
    finally:
        host.stop()
