"""The blob trigger's Event Grid source keeps what it accepted in storage, as Azure's does: the webhook writes each
event to the host's queue `azure-webjobs-blobtrigger-<host id>` before it answers 202, so a host that dies before
(or while) running it does not lose it — the next host reads it from the queue (BlobsExtensionConfigProvider.cs and
BlobTriggerQueueWriterFactory.cs in azure-sdk-for-net). Before, the local queue was in memory: the fault campaign's
seed 1 (v2) lost two uploads answered 202 just before a host SIGKILL, with no record of them anywhere.

In process, on Azurite, with the host's own queue, trigger and invoker; the function is a plain Python callable."""

from __future__ import annotations

import asyncio
import json
import uuid

import azure.functions as func
from azure.storage.blob import BlobServiceClient

from local.functions_host import storage
from local.functions_host.blob_trigger import BlobPathPattern
from local.functions_host.blob_webhook import BLOB_TRIGGER_QUEUE_PREFIX, BlobEventTrigger, BlobTriggerQueue, handle
from local.functions_host.host_json import QueueOptions
from local.functions_host.invoker import Invoker
from local.functions_host.loader import IndexedFunction
from local.processes import free_port
from tests.parity.test_blob_eventgrid import blob_created

OPTIONS = QueueOptions(max_dequeue_count=2, max_polling_interval_s=0.2)


def event_function(seen: list[str]) -> IndexedFunction:
    def on_blob(blob: func.InputStream) -> None:
        seen.append(f"{blob.name}:{blob.read().decode()}")

    binding = {"type": "blobTrigger", "direction": "in", "name": "blob", "path": "evq/{name}", "source": "EventGrid"}
    return IndexedFunction("on_blob", "blobTrigger", [binding], on_blob)


def host_parts(conn: str, queue_name: str, seen: list[str], tmp_path) -> tuple[BlobTriggerQueue, BlobEventTrigger]:
    """What one host builds: its trigger queue and the event-sourced function on it."""
    fn = event_function(seen)
    queue = BlobTriggerQueue(storage.encoded_queue(conn, queue_name), options=OPTIONS)
    trigger = BlobEventTrigger(fn, BlobPathPattern.parse("evq/{name}"), source=storage.blob_service(conn),
                               poison=storage.poison_queue(conn), invoker=Invoker(tmp_path), queue=queue,
                               parallelism=1)
    queue.triggers[fn.full_name] = trigger
    return queue, trigger


def test_an_accepted_event_waits_in_storage_and_the_next_host_runs_it(azurite, tmp_path):
    queue_name = BLOB_TRIGGER_QUEUE_PREFIX + f"test-{uuid.uuid4().hex[:12]}"
    box = BlobServiceClient.from_connection_string(azurite).get_container_client("evq")
    if not box.exists():
        box.create_container()
    name = f"up-{uuid.uuid4().hex[:8]}.csv"
    etag = box.upload_blob(name, b"a,b\n1,2\n").get_blob_properties().etag
    seen_first: list[str] = []
    first, trigger = host_parts(azurite, queue_name, seen_first, tmp_path)  # its poller never starts: it "died"

    event = blob_created(box, name, etag)
    answer = asyncio.run(handle({trigger.fn.full_name: trigger}, trigger.fn.full_name, "Notification",
                                json.dumps([event]).encode()))

    assert answer.status == 202 and seen_first == []
    (waiting,) = storage.encoded_queue(azurite, queue_name).peek_messages(max_messages=32)
    assert json.loads(waiting.content) == {"Type": "BlobTrigger", "FunctionId": "Host.Functions.on_blob",
                                           "BlobType": "BlockBlob", "ContainerName": "evq", "BlobName": name,
                                           "ETag": f'"{etag.strip(chr(34))}"',
                                           "ContentLength": event["data"]["contentLength"]}

    seen: list[str] = []
    second, _ = host_parts(azurite, queue_name, seen, tmp_path)

    async def next_host() -> None:
        second.start()
        for _ in range(200):  # a condition, not a sleep: until the run is seen and the message deleted
            props = await asyncio.to_thread(second.queue.get_queue_properties)
            if seen and props.approximate_message_count == 0:
                break
            await asyncio.sleep(0.05)
        await second.stop(5)

    asyncio.run(next_host())
    assert seen == [f"evq/{name}:a,b\n1,2\n"]
    assert second.queue.get_queue_properties().approximate_message_count == 0


def test_an_event_that_cannot_be_written_to_the_queue_is_a_500_so_event_grid_delivers_it_again(azurite, tmp_path):
    dead = f"DefaultEndpointsProtocol=http;AccountName=x;AccountKey={'A' * 88};" \
           f"QueueEndpoint=http://127.0.0.1:{free_port()}/x;BlobEndpoint=http://127.0.0.1:{free_port()}/x"
    box = BlobServiceClient.from_connection_string(azurite).get_container_client("evq")
    if not box.exists():
        box.create_container()
    name = f"up-{uuid.uuid4().hex[:8]}.csv"
    etag = box.upload_blob(name, b"a\n1\n").get_blob_properties().etag
    _, trigger = host_parts(dead, BLOB_TRIGGER_QUEUE_PREFIX + "unreachable", [], tmp_path)

    answer = asyncio.run(handle({trigger.fn.full_name: trigger}, trigger.fn.full_name, "Notification",
                                json.dumps([blob_created(box, name, etag)]).encode()))

    assert answer.status == 500
