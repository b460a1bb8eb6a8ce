"""The blob trigger's Event Grid source: `POST /runtime/webhooks/blobs?functionName=Host.Functions.NAME&code=KEY`.

What the Azure extension does, and so what this does (azure-sdk-for-net
sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Blobs/src/Config/BlobsExtensionConfigProvider.cs, ConvertAsync /
ProcessEventsAsync / GetBlobTriggerMessage; the `aeg-event-type` handling is the Event Grid extension's
HttpRequestProcessor.cs):
- `SubscriptionValidation` answers 200 `{"validationResponse": code}`, `Unsubscribe` 202, any other header 400;
- `Notification`: each event becomes a blob trigger message (container and blob from `data.url`, ETag `"data.eTag"`,
  FunctionId = the `functionName` query value, not checked here) written to the host's blob trigger queue, the
  storage queue `azure-webjobs-blobtrigger-<host id>` in AzureWebJobsStorage (BlobTriggerQueueWriterFactory.cs:
  HostQueueNames.GetHostBlobTriggerQueueName on `_queueServiceClientProvider.GetHost()`; created if missing), and
  the answer is 202 once every message is written: the function runs later, from the queue. A body that is not
  events, or a queue that cannot be written, answers 500 (Event Grid delivers again).
- The queue side (SharedBlobQueueListener, BlobQueueTriggerExecutor.cs): the queue is read as queue triggers read
  theirs (QueuesOptions: batches, 10-minute invisibility renewed while the function runs; so a host killed mid-run
  runs the blob again once the message is visible again). An unknown FunctionId or a blob that no longer exists is
  dropped; otherwise the function runs on the blob as it is now. With source EventGrid there is NO blob receipt and
  no ETag check, so a duplicated event runs the function again (Event Grid delivers at least once: the app is
  idempotent). A failed run is retried up to host.json `extensions.queues.maxDequeueCount` times, then a message
  goes to `webjobs-blobtrigger-poison`, as for the polling source."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import uuid
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, QueueMessage

from local.functions_host import eventgrid
from local.functions_host.blob_trigger import (
    BlobPathPattern,
    SeenBlob,
    addressable,
    blob_properties,
    input_stream,
    quoted,
    send_to_poison,
)
from local.functions_host.eventgrid import WebhookAnswer
from local.functions_host.host_json import QueueOptions
from local.functions_host.invoker import Invoker
from local.functions_host.loader import IndexedFunction
from local.functions_host.log import short_error
from local.functions_host.queue_trigger import QueuePoller
from local.functions_host.storage import ensure_queue

log = logging.getLogger("functions_host")

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
BLOB_TRIGGER_QUEUE_PREFIX = "azure-webjobs-blobtrigger-"  # HostQueueNames.HostBlobTriggerQueuePrefix


@dataclass(frozen=True)
class BlobTriggerMessage:
    """What the extension queues per event (BlobTriggerMessage.cs): FunctionId, container, blob, quoted ETag."""

    function_id: str
    container: str
    blob_name: str
    etag: str
    length: int = 0  # the event's data.contentLength: all a blob that cannot be addressed is known by

    def to_json(self) -> str:
        """BlobTriggerMessage.cs's JSON; `ContentLength` is local (the extension reads the length from the blob)."""
        return json.dumps({"Type": "BlobTrigger", "FunctionId": self.function_id, "BlobType": "BlockBlob",
                           "ContainerName": self.container, "BlobName": self.blob_name, "ETag": self.etag,
                           "ContentLength": self.length})

    @classmethod
    def from_json(cls, text: str) -> BlobTriggerMessage:
        try:
            body = json.loads(text)
            return cls(str(body["FunctionId"]), str(body["ContainerName"]), str(body["BlobName"]),
                       str(body.get("ETag") or ""), int(body.get("ContentLength") or 0))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None


def container_and_blob(url: str) -> tuple[str, str]:
    """Container and blob name of a blob URL, as Azure.Storage's BlobUriBuilder reads it: an IP or localhost host
    (Azurite) puts the account name first in the path (path-style), an account host does not."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        path_style = host == "localhost" or ipaddress.ip_address(host) is not None
    except ValueError:
        path_style = False
    segments = parts.path.lstrip("/").split("/", 2 if path_style else 1)
    if path_style:
        segments = segments[1:]
    if len(segments) < 2 or not segments[0] or not segments[1]:
        raise ValueError(f"'{url}' is not a blob URL")
    return unquote(segments[0]), unquote(segments[1])


def trigger_message(event: dict, function_id: str) -> BlobTriggerMessage:
    data = event.get("data")
    if not isinstance(data, dict) or not data.get("url") or data.get("eTag") is None:
        raise ValueError("a BlobCreated event needs data.url and data.eTag")
    container, blob = container_and_blob(str(data["url"]))
    return BlobTriggerMessage(function_id, container, blob, quoted(str(data["eTag"])),
                              int(data.get("contentLength") or 0))


class BlobEventTrigger:
    """One `source: EventGrid` blob trigger function: what runs when the host's trigger queue hands it a message."""

    def __init__(self, fn: IndexedFunction, pattern: BlobPathPattern, *, source: BlobServiceClient,
                 poison: QueueClient, invoker: Invoker, queue: BlobTriggerQueue, parallelism: int):
        self.fn = fn
        self.pattern = pattern
        self.source = source
        self.poison = poison
        self.invoker = invoker
        self.queue = queue
        self._slots = asyncio.Semaphore(max(1, parallelism))  # host.json extensions.blobs.maxDegreeOfParallelism

    def start(self) -> None:
        """Nothing to poll: events arrive through the webhook, runs through the host's trigger queue."""

    async def stop(self, timeout: float) -> None:
        """The trigger queue's poller stops the runs."""

    async def enqueue(self, message: BlobTriggerMessage) -> None:
        await self.queue.enqueue(message)

    async def run(self, message: BlobTriggerMessage) -> bool:
        """One try. True: ran (or dropped as Azure drops it); False: failed, to be tried again."""
        async with self._slots:
            try:
                return await self._try_once(message)
            except Exception as exc:  # storage unreachable etc.: counts as a failed try
                log.warning("Blob trigger 'Functions.%s': %s/%s failed to run (%s)", self.fn.name,
                            message.container, message.blob_name, short_error(exc))
                return False

    async def _try_once(self, message: BlobTriggerMessage) -> bool:
        try:
            blob, data = await asyncio.to_thread(self._fetch, message)
        except ResourceNotFoundError:
            log.info("Blob %s/%s no longer exists; its event is dropped (as the extension does)", message.container,
                     message.blob_name)
            return True
        stream = input_stream(message.container, blob, data)
        reason = f"New blob detected(EventGrid): {message.container}/{message.blob_name}"
        result = await self.invoker.invoke(self.fn, stream, reason=reason, invocation_id=str(uuid.uuid4()))
        return result.ok

    def _fetch(self, message: BlobTriggerMessage) -> tuple[SeenBlob, bytes]:
        client = self.source.get_blob_client(message.container, message.blob_name)
        if not addressable(message.blob_name):  # as the polling path: its name, no content (never a normalised URL)
            log.warning("Blob trigger 'Functions.%s': a blob in '%s' has a name with '.'/'..' segments that cannot be "
                        "addressed safely; its function gets the name and no content", self.fn.name,
                        message.container)
            properties = {"ETag": message.etag, "ContentLength": message.length, "Length": message.length,
                          "BlobType": "BlockBlob"}
            return SeenBlob(message.blob_name, message.etag, client.url, properties, {}), b""
        downloader = client.download_blob()
        props = downloader.properties
        props.etag = quoted(props.etag)
        seen = SeenBlob(message.blob_name, props.etag, client.url, blob_properties(props), dict(props.metadata or {}))
        return seen, downloader.readall()


class BlobTriggerQueue(QueuePoller):
    """The host's blob trigger queue (one per host, every `source: EventGrid` blob function): the webhook writes,
    this reads and hands each message to the function its FunctionId names. `queue` and each trigger's `poison`
    encode message text as base64, as the extension's queue clients do."""

    def __init__(self, queue: QueueClient, *, options: QueueOptions):
        super().__init__("Blob trigger queue", queue=queue, poison=queue, options=options)
        self.triggers: dict[str, BlobEventTrigger] = {}  # by FunctionId (Host.Functions.NAME)
        self._created = False

    async def enqueue(self, message: BlobTriggerMessage) -> None:
        await asyncio.to_thread(self._send, message.to_json())
        self.enqueued()

    def _send(self, text: str) -> None:
        if not self._created:  # AddMessageAndCreateIfNotExistsAsync
            ensure_queue(self.queue)
            self._created = True
        self.queue.send_message(text)

    async def _handle(self, message: QueueMessage) -> None:
        try:
            trigger_message = BlobTriggerMessage.from_json(message.content or "")
        except ValueError as exc:
            log.warning("%s: message %s is not a blob trigger message (%s); dropped", self.label, message.id, exc)
            await asyncio.to_thread(self.queue.delete_message, message.id, message.pop_receipt)
            return
        trigger = self.triggers.get(trigger_message.function_id)
        if trigger is None:  # BlobQueueTriggerExecutor: a function this host does not have is not retried
            log.warning("%s: no blob trigger function '%s'; message %s dropped", self.label,
                        trigger_message.function_id, message.id)
            await asyncio.to_thread(self.queue.delete_message, message.id, message.pop_receipt)
            return
        if self.tries.spent(int(message.dequeue_count or 0)):  # its host died while running it, every time
            await asyncio.to_thread(self._poison, trigger, trigger_message, message)
            return
        await self._run_invisible(message, trigger.run(trigger_message))

    def _to_poison(self, message: QueueMessage) -> None:
        trigger_message = BlobTriggerMessage.from_json(message.content or "")
        self._poison(self.triggers[trigger_message.function_id], trigger_message, message)

    def _poison(self, trigger: BlobEventTrigger, trigger_message: BlobTriggerMessage, message: QueueMessage) -> None:
        blob = SeenBlob(trigger_message.blob_name, trigger_message.etag, "", {}, {})
        send_to_poison(trigger.poison, trigger.fn, trigger_message.container, blob, int(message.dequeue_count or 0))
        self.queue.delete_message(message.id, message.pop_receipt)


async def handle(triggers: dict[str, BlobEventTrigger], function_name: str, event_type: str | None,
                 body: bytes) -> WebhookAnswer:
    kind = (event_type or "").strip().lower()
    if kind == eventgrid.UNSUBSCRIBE.lower():
        return WebhookAnswer(202)
    if kind not in (eventgrid.VALIDATION.lower(), eventgrid.NOTIFICATION.lower()):
        return WebhookAnswer(400)
    try:
        events = eventgrid.parse_events(body)
        if kind == eventgrid.VALIDATION.lower():
            code = events[0]["data"]["validationCode"]
            log.info("perform handshake with eventGrid for function: %s", function_name)
            return WebhookAnswer(200, {"validationResponse": code})
        messages = [trigger_message(e, function_name) for e in events]
    except (ValueError, KeyError, TypeError, IndexError) as exc:  # the extension throws: the host answers 500
        log.warning("blobs webhook: malformed request for '%s': %s", function_name, exc)
        return WebhookAnswer(500)
    trigger = triggers.get(function_name)
    for message in messages:
        if trigger is None:
            log.warning("blobs webhook: no blob trigger function '%s'; its message is dropped", function_name)
        elif message.container != trigger.pattern.container or trigger.pattern.match(message.blob_name) is None:
            log.warning("blobs webhook: %s/%s does not match the path of '%s'; dropped", message.container,
                        message.blob_name, function_name)
        else:
            try:
                await trigger.enqueue(message)
            except Exception as exc:  # the extension's write throws: 500, and Event Grid delivers again
                log.warning("blobs webhook: cannot write to the blob trigger queue (%s)", short_error(exc))
                return WebhookAnswer(500)
    return WebhookAnswer(202)
