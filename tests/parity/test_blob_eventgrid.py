"""The blob trigger's Event Grid source, as Azure runs it, on the local host and the local storage topic.

Requests are the documented ones: the BlobCreated sample of "Azure Blob Storage as an Event Grid source"
(https://learn.microsoft.com/azure/event-grid/event-schema-blob-storage) and the SubscriptionValidationEvent of
"Webhook event delivery" (https://learn.microsoft.com/azure/event-grid/webhook-event-delivery), posted to
`/runtime/webhooks/blobs?functionName=Host.Functions.NAME&code=KEY` ("Tutorial: Trigger Azure Functions on blob
containers using an event subscription"). Answers are the extension's (azure-sdk-for-net
sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Blobs/src/Config/BlobsExtensionConfigProvider.cs and
Listeners/BlobQueueTriggerExecutor.cs): 200 + validationResponse, 202 for notifications, the function run from a
queue later, no blob receipt (a duplicated event runs again), tries then `webjobs-blobtrigger-poison`."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
import requests

from local.eventgrid_delivery import retry_delay_s
from local.functions_host.keys import SYSTEM_KEY_BLOBS
from local.processes import free_port
from local.storage_events import StorageEvents, Subscription
from tests.integration.test_functions_host import (
    MAX_DEQUEUE,
    container,
    hosts_container,
    poison_messages,
    start_host,
    upload,
)
from tests.waiting import wait_for

FUNCTION = "Host.Functions.on_blob_event"

# The documented BlobCreated sample (Event Grid schema); url and eTag are set to the uploaded blob's below.
BLOB_CREATED_SAMPLE = {
    "topic": "/subscriptions/{subscription-id}/resourceGroups/Storage/providers/Microsoft.Storage/"
             "storageAccounts/my-storage-account",
    "subject": "/blobServices/default/containers/test-container/blobs/new-file.txt",
    "eventType": "Microsoft.Storage.BlobCreated",
    "eventTime": "2017-06-26T18:41:00.9584103Z",
    "id": "831e1650-001e-001b-66ab-eeb76e069631",
    "data": {
        "api": "PutBlockList",
        "clientRequestId": "6d79dbfb-0e37-4fc4-981f-442c9ca65760",
        "requestId": "831e1650-001e-001b-66ab-eeb76e000000",
        "eTag": "0x8D4BCC2E4835CD0",
        "contentType": "text/plain",
        "contentLength": 524288,
        "blobType": "BlockBlob",
        "url": "https://my-storage-account.blob.core.windows.net/testcontainer/new-file.txt",
        "sequencer": "00000000000004420000000000028963",
        "storageDiagnostics": {"batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"},
    },
    "dataVersion": "",
    "metadataVersion": "1",
}
VALIDATION_SAMPLE = {
    "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
    "topic": "/subscriptions/xx/resourceGroups/xx/providers/Microsoft.Storage/storageAccounts/xx",
    "subject": "",
    "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
             "validationUrl": "https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/myeventsub/validate"},
    "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
    "eventTime": "2018-01-25T22:12:19.4556811Z",
    "metadataVersion": "1",
    "dataVersion": "1",
}


@pytest.fixture(scope="module")
def host(azurite, tmp_path_factory):
    h = start_host(tmp_path_factory.mktemp("blob-eventgrid-host"), azurite, "functions-host-blob-eventgrid")
    yield h
    h.stop()


def webhook(host, function: str = FUNCTION) -> str:
    key = host.keys.system_keys[SYSTEM_KEY_BLOBS]
    return f"{host.url}/runtime/webhooks/blobs?functionName={function}&code={key}"


def post(url: str, events: list[dict], kind: str = "Notification") -> requests.Response:
    return requests.post(url, data=json.dumps(events), timeout=10,
                         headers={"aeg-event-type": kind, "content-type": "application/json"})


def blob_created(box, name: str, etag: str) -> dict:
    event = copy.deepcopy(BLOB_CREATED_SAMPLE)
    event["subject"] = f"/blobServices/default/containers/{box.container_name}/blobs/{name}"
    event["data"]["url"] = box.get_blob_client(name).url
    event["data"]["eTag"] = etag.strip('"')
    return event


def runs(host, name: str) -> list[dict]:
    return [m for m in host.markers("blob_event") if m["name"] == f"{host.env['EVENT_CONTAINER']}/{name}"]


def test_the_subscription_validation_handshake(host):
    answer = post(webhook(host), [VALIDATION_SAMPLE], kind="SubscriptionValidation")
    assert answer.status_code == 200
    assert answer.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert post(webhook(host), [], kind="Unsubscribe").status_code == 202
    assert post(webhook(host), [VALIDATION_SAMPLE], kind="SubscriptionDeletion").status_code == 400


def test_only_the_blobs_extension_key_or_the_master_key_open_the_webhook(host):
    base = f"{host.url}/runtime/webhooks/blobs?functionName={FUNCTION}"
    for code in ("wrong", host.keys.system_keys["eventgrid_extension"], host.function_key, ""):
        assert post(f"{base}&code={code}", [VALIDATION_SAMPLE], kind="SubscriptionValidation").status_code == 401
    assert post(f"{base}&code={host.keys.master_key}", [VALIDATION_SAMPLE],
                kind="SubscriptionValidation").status_code == 200


def test_a_blob_created_event_runs_the_function_on_the_blob(host, azurite):
    box = container(azurite, host.env["EVENT_CONTAINER"])
    etag = upload(box, "new-file.txt", b"x,y\n1,2\n")
    answer = post(webhook(host), [blob_created(box, "new-file.txt", etag)])
    assert answer.status_code == 202 and answer.content == b""  # accepted: the run happens from the queue
    run = wait_for(lambda: next(iter(runs(host, "new-file.txt")), None), what="the event-sourced run")
    assert run["content"] == "x,y\n1,2\n" and run["properties"]["ETag"] == etag
    assert run["properties"]["ContentLength"] == 8 and run["properties"]["LastModified"]


def test_a_duplicated_event_runs_again_without_a_receipt(host, azurite):
    """Event Grid delivers at least once; with source EventGrid the extension keeps no blob receipt and does not
    compare ETags (BlobQueueTriggerExecutor.cs), so each delivery is a run: the app must be idempotent."""
    box = container(azurite, host.env["EVENT_CONTAINER"])
    etag = upload(box, "twice.csv", b"a\n1\n")
    event = blob_created(box, "twice.csv", etag)
    assert post(webhook(host), [event]).status_code == 202
    assert post(webhook(host), [event]).status_code == 202
    both = wait_for(lambda: (lambda r: r if len(r) == 2 else None)(runs(host, "twice.csv")), what="two runs")
    assert {r["properties"]["ETag"] for r in both} == {etag}
    receipts = list(hosts_container(azurite).list_blobs(name_starts_with="blobreceipts/"))
    assert not [r for r in receipts if "/Host.Functions.on_blob_event/" in r.name]


def test_a_failing_run_is_tried_max_dequeue_count_times_then_poisoned(host, azurite):
    box = container(azurite, host.env["EVENT_CONTAINER"])
    etag = upload(box, "fail-1.csv", b"oops")
    assert post(webhook(host), [blob_created(box, "fail-1.csv", etag)]).status_code == 202
    messages = wait_for(lambda: poison_messages(azurite, box.container_name), timeout=20, what="poison message")
    assert messages == [{"Type": "BlobTrigger", "FunctionId": FUNCTION, "BlobType": "BlockBlob",
                         "ContainerName": box.container_name, "BlobName": "fail-1.csv", "ETag": etag}]
    assert len(runs(host, "fail-1.csv")) == MAX_DEQUEUE


def test_events_the_extension_cannot_read_are_a_500_and_unknown_functions_are_accepted(host):
    broken = copy.deepcopy(BLOB_CREATED_SAMPLE)
    del broken["data"]["url"]
    assert post(webhook(host), [broken]).status_code == 500  # GetBlobTriggerMessage throws
    # FunctionId is not checked when queued; the queue side drops an unknown one (FunctionNotFound)
    assert post(webhook(host, "Host.Functions.nope"), [BLOB_CREATED_SAMPLE]).status_code == 202


# the storage system topic's stand-in ------------------------------------------------------------------------------
def test_the_topic_validates_then_delivers_each_new_blob_at_least_once(host, azurite):
    box = container(azurite, host.env["EVENT_CONTAINER"])
    subscription = Subscription(webhook(host), f"/blobServices/default/containers/{box.container_name}/blobs/up/")
    topic = StorageEvents(box, subscription, state_path=None, seed=7, duplicate_p=1.0)
    assert topic.validate()
    topic.publish(topic.scan(), time.monotonic())  # what was there before
    topic.deliver_due(time.monotonic() + 1)
    etag = upload(box, "up/a.csv", b"q\n1\n")
    box.upload_blob("elsewhere.csv", b"not under the filter")
    events = topic.scan()
    assert [e["subject"] for e in events] == [f"/blobServices/default/containers/{box.container_name}/blobs/up/a.csv"]
    assert events[0]["eventType"] == "Microsoft.Storage.BlobCreated" and events[0]["data"]["eTag"] == etag.strip('"')
    assert set(events[0]) == set(BLOB_CREATED_SAMPLE) and set(events[0]["data"]) == set(BLOB_CREATED_SAMPLE["data"])
    topic.publish(events, time.monotonic())
    topic.deliver_due(time.monotonic() + 1)
    assert not topic.pending and not topic.scan()  # delivered (twice: duplicate_p=1), and published once
    wait_for(lambda: len(runs(host, "up/a.csv")) == 2, what="both deliveries run")


def test_the_topic_retries_on_event_grids_schedule_and_drops_what_it_does_not_retry(host, azurite):
    box = container(azurite, host.env["EVENT_CONTAINER"])
    etag = upload(box, "retry.csv", b"r\n")
    event = blob_created(box, "retry.csv", etag)
    down = StorageEvents(box, Subscription(f"http://127.0.0.1:{free_port()}/runtime/webhooks/blobs",
                                           "/blobServices/default/containers/x/blobs/"), state_path=None,
                         duplicate_p=0.0)
    down.publish([event], 0.0)
    down.deliver_due(1.0)
    assert [(d.attempts, d.due) for d in down.pending] == [(1, 11.0)]  # first retry after 10 s
    assert [retry_delay_s(n) for n in range(1, 11)] == [10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200]
    refused = StorageEvents(box, Subscription(webhook(host).replace("code=", "code=wrong"),
                                              "/blobServices/default/containers/x/blobs/"), state_path=None,
                            duplicate_p=0.0)
    refused.publish([event], 0.0)
    refused.deliver_due(1.0)
    assert not refused.pending  # 401: Event Grid does not retry it


# the default -------------------------------------------------------------------------------------------------------
def test_event_grid_is_the_default_source_in_both_modes_and_polling_stays_selectable():
    """Flex Consumption runs blob triggers only from Event Grid ("Azure Blob storage trigger for Azure Functions"),
    so the local stack runs that source too."""
    from function_app.blob_upload import blob_source

    assert blob_source({}).value == "EventGrid"
    assert blob_source({"RETRAIN_MODE": "local"}).value == "EventGrid"
    assert blob_source({"RETRAIN_MODE": "azure"}).value == "EventGrid"
    assert blob_source({"BLOB_TRIGGER_SOURCE": "LogsAndContainerScan"}).value == "LogsAndContainerScan"


def test_the_stack_subscribes_the_webhook_as_postdeploy_does(tmp_path):
    """infra/scripts/postdeploy.sh: the endpoint
    `.../runtime/webhooks/blobs?functionName=Host.Functions.blob_upload&code={blobs_extension}`, the filter BlobCreated
    with subjectBeginsWith `/blobServices/default/containers/{incoming}/blobs/`."""
    from local.stack import Stack, StackConfig

    stack = Stack(StackConfig(local_dir=tmp_path, host_port=free_port()))
    key = stack.host_keys.system_keys[SYSTEM_KEY_BLOBS]
    assert stack.blobs_webhook() == (f"{stack.config.host_url}/runtime/webhooks/blobs"
                                     f"?functionName=Host.Functions.blob_upload&code={key}")
    argv = stack._storage_events_argv()
    assert argv[argv.index("--subject-begins-with") + 1] == "/blobServices/default/containers/incoming/blobs/"
    postdeploy = (Path(__file__).parents[2] / "infra" / "scripts" / "postdeploy.sh").read_text()
    assert "runtime/webhooks/blobs?functionName=Host.Functions.blob_upload&code=${blobs_key}" in postdeploy
    assert '\\"subjectBeginsWith\\":\\"/blobServices/default/containers/${INCOMING_CONTAINER}/blobs/\\"' in postdeploy
