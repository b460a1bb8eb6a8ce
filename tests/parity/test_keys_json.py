"""`retrain keys --json` against the real local stack: what it prints drives the stack as Azure's would be driven.

- `eventgrid_webhook_url` is an Event Grid subscription endpoint for the `run_completed` function, key included
  (https://learn.microsoft.com/azure/azure-functions/event-grid-how-tos, "Webhook endpoint URL"): it answers the
  subscription validation handshake (`aeg-event-type: SubscriptionValidation` answered with
  `{"validationResponse": <validationCode>}`: https://learn.microsoft.com/azure/event-grid/webhook-event-delivery)
  and takes the documented sample run events
  (https://learn.microsoft.com/azure/event-grid/event-schema-machine-learning);
- `scoring_url` and `scoring_key` open the scoring endpoint (Bearer key, as a managed online endpoint);
- none of these secrets shows up in any of the stack's logs.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from local.pipeline_endpoint import local_workspace_id
from local.processes import PROJECT_ROOT
from local.stack import start_on_free_ports
from shared.bootstrap import build_stores
from shared.settings import Settings
from tests.parity.run_event_samples import RUN_COMPLETED, RUN_STATUS_CHANGED
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

_SCRIPT = Path(sys.executable).parent / "retrain"
RETRAIN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "tools.cli"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_on_free_ports(tmp_path_factory.mktemp("stack"), training_budget_s=3, drift_schedule="0 0 0 1 1 *")
    s.audit = build_stores(Settings(storage_connection=s.config.connection_string)).audit
    yield s
    s.stop()


@pytest.fixture(scope="module")
def keys(stack) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RETRAIN_") and k not in ("AzureWebJobsStorage", "SCORING_URL", "SCORING_KEY")}
    env["RETRAIN_LOCAL_DIR"] = str(stack.config.local_dir)
    proc = subprocess.run([*RETRAIN, "keys", "--json"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_keys_json_prints_the_stack_endpoints_and_their_keys(stack, keys):
    assert keys["eventgrid_webhook_url"] == stack.eventgrid_webhook()  # where the pipeline endpoint sends run events
    assert keys["eventgrid_webhook_url"].startswith(f"{stack.config.host_url}/runtime/webhooks/eventgrid?"
                                                    "functionName=run_completed&code=")
    assert keys["scoring_url"] == f"{stack.config.scoring_url}/score"
    assert keys["scoring_key"] == stack.secrets["scoring_key"]
    assert keys["storage_connection_string"] == stack.config.connection_string


def test_the_printed_webhook_url_answers_the_validation_handshake(keys):
    code = f"code-{uuid.uuid4().hex}"
    validation = [{"id": str(uuid.uuid4()), "topic": local_workspace_id(), "subject": "",
                   "data": {"validationCode": code,
                            "validationUrl": "https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/x/"
                                             "validate?id=0&t=2026-01-01T00:00:00Z&apiVersion=2018-05-01-preview"},
                   "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                   "eventTime": "2026-01-01T00:00:00Z", "metadataVersion": "1", "dataVersion": "1"}]
    answer = requests.post(keys["eventgrid_webhook_url"], json=validation,
                           headers={"aeg-event-type": "SubscriptionValidation"}, timeout=30)
    assert answer.status_code == 200 and answer.json() == {"validationResponse": code}


@pytest.mark.parametrize("sample", [RUN_COMPLETED, RUN_STATUS_CHANGED], ids=["RunCompleted", "RunStatusChanged"])
def test_the_documented_run_events_reach_run_completed_through_the_printed_url(stack, keys, sample):
    """The documented sample, its topic the local workspace's id (as Event Grid stamps it), for a run this service
    never submitted: handled and recorded as such. The RunStatusChanged sample says "failed" in lowercase: read as a
    terminal status, it reaches the submitted-runs check instead of being dropped as a status that ends nothing."""
    run_id = f"AutoML_{uuid.uuid4().hex}"
    event = copy.deepcopy(sample) | {"topic": local_workspace_id(), "id": str(uuid.uuid4()),
                                     "subject": f"experiments/0fa9dfaa/runs/{run_id}"}
    event["data"]["runId"] = run_id
    answer = requests.post(keys["eventgrid_webhook_url"], json=[event], timeout=60,
                           headers={"aeg-event-type": "Notification", "aeg-delivery-count": "0"})
    assert 200 <= answer.status_code < 300, answer.text
    record = wait_for(lambda: next((r for r in stack.audit.list() if r.run_id == run_id), None),
                      what=f"the audit record of {sample['eventType']}")
    assert (record.trigger, record.function, record.outcome) == ("eventgrid", "run_completed", "ignored")
    assert "not a run this service submitted" in record.detail


def test_the_printed_scoring_url_takes_the_printed_key(keys):
    body = {"input_data": {"columns": ["age"], "index": [0], "data": [[30]]}}
    assert requests.post(keys["scoring_url"], json=body, timeout=30).status_code == 401
    with_key = requests.post(keys["scoring_url"], json=body, timeout=30,
                             headers={"Authorization": f"Bearer {keys['scoring_key']}"})
    assert with_key.status_code != 401  # authenticated: what it answers without a model is the scoring tests' job


def test_the_printed_dashboard_url_opens_the_page_and_the_page_source_holds_no_key(stack, keys):
    url = keys["dashboard_url"]
    assert url == f"{stack.config.host_url}/api/dashboard?code={keys['function_key']}"
    page = requests.get(url, timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert keys["function_key"] not in page.text and "code=" not in page.text
    assert requests.get(url.split("?", 1)[0], timeout=30).status_code == 401  # no key, no page


def test_the_printed_secrets_never_reach_the_stack_logs(stack, keys):
    system_key = keys["eventgrid_webhook_url"].rsplit("code=", 1)[1]
    logs = {path.name: path.read_text(errors="replace") for path in stack.logs_dir.rglob("*") if path.is_file()}
    assert logs
    for name, text in logs.items():
        for secret in (system_key, keys["scoring_key"], keys["function_key"], keys["webhook_secret"]):
            assert secret not in text, f"a printed secret is in {name}"
