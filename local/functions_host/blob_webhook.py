"""The blob trigger's Event Grid source: `POST /runtime/webhooks/blobs?functionName=Host.Functions.NAME&code=KEY`.

What the Azure extension does, and so what this does (azure-sdk-for-net
sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Blobs/src/Config/BlobsExtensionConfigProvider.cs, ConvertAsync /
ProcessEventsAsync / GetBlobTriggerMessage; the `aeg-event-type` handling is the Event Grid extension's
HttpRequestProcessor.cs):
- `SubscriptionValidation` answers 200 `{"validationResponse": code}`, `Unsubscribe` 202, any other header 400;
- `Notification`: each event becomes a blob trigger message (container and blob from `data.url`, ETag `"data.eTag"`,
  FunctionId = the `functionName` query value, not checked here) put on the host's blob trigger queue, and the
  answer is 202 at once: the function runs later, from the queue. A body that is not events answers 500.
- The queue side (BlobQueueTriggerExecutor.cs): an unknown FunctionId or a blob that no longer exists is dropped;
  otherwise the function runs on the blob as it is now. With source EventGrid there is NO blob receipt and no ETag
  check, so a duplicated event runs the function again (Event Grid delivers at least once: the app is idempotent).
  A failed run is retried up to host.json `extensions.queues.maxDequeueCount` times, then a message goes to
  `webjobs-blobtrigger-poison`, as for the polling source.
Locally the trigger queue is in memory (a host restart loses queued runs; Azure's is a storage queue)."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import uuid
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

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
from local.functions_host.dispatch import Invocations, Settle, TryLimit
from local.functions_host.eventgrid import WebhookAnswer
from local.functions_host.invoker import Invoker
from local.functions_host.loader import IndexedFunction
from local.functions_host.log import short_error

log = logging.getLogger("functions_host")

BLOB_CREATED = "Microsoft.Storage.BlobCreated"


@dataclass(frozen=True)
class BlobTriggerMessage:
    """What the extension queues per event (BlobTriggerMessage.cs): FunctionId, container, blob, quoted ETag."""

    function_id: str
    container: str
    blob_name: str
    etag: str
    length: int = 0  # the event's data.contentLength: all a blob that cannot be addressed is known by


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
    """One `source: EventGrid` blob trigger function: runs the messages its webhook queues."""

    def __init__(self, fn: IndexedFunction, pattern: BlobPathPattern, *, source: BlobServiceClient,
                 poison: QueueClient, invoker: Invoker, tries: TryLimit, retry_delay_s: float, parallelism: int):
        self.fn = fn
        self.pattern = pattern
        self.source = source
        self.poison = poison
        self.invoker = invoker
        self.tries = tries
        self.retry_delay_s = max(0.0, retry_delay_s)
        self.invocations = Invocations(parallelism)

    def start(self) -> None:
        """Nothing to poll: events arrive through the webhook."""

    async def stop(self, timeout: float) -> None:
        await self.invocations.stop(timeout)

    def enqueue(self, message: BlobTriggerMessage) -> None:
        if not self.invocations.stopping:
            self.invocations.start(self._run(message), name=f"blob-event:{self.fn.name}")

    async def _run(self, message: BlobTriggerMessage) -> None:
        for this_try in itertools.count(1):  # the trigger queue message's dequeue count
            try:
                async with self.invocations.slot():
                    ok = await self._try_once(message)
            except Exception as exc:  # storage unreachable etc.: counts as a failed try, as a dequeue would
                log.warning("Blob trigger 'Functions.%s': %s/%s failed to run (%s)", self.fn.name,
                            message.container, message.blob_name, short_error(exc))
                ok = False
            settle = self.tries.settle(ok, this_try)
            if settle is Settle.DONE:
                return
            if settle is Settle.POISON:
                blob = SeenBlob(message.blob_name, message.etag, "", {}, {})
                await asyncio.to_thread(send_to_poison, self.poison, self.fn, message.container, blob, this_try)
                return
            if not self.invocations.stopping:
                await asyncio.sleep(self.retry_delay_s)  # the queue's visibilityTimeout before the next dequeue

    async def _try_once(self, message: BlobTriggerMessage) -> bool:
        """True: ran (or dropped as Azure drops it); False: failed, to be tried again."""
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
            trigger.enqueue(message)
    return WebhookAnswer(202)
