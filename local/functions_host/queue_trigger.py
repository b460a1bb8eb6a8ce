"""Queue triggers with the Storage queues extension's delivery semantics (Microsoft.Azure.WebJobs.Extensions.Storage.
Queues; QueueListener.cs and QueueProcessor.cs in Azure/azure-webjobs-sdk, same logic in azure-sdk-for-net):

- messages are received in batches of `batchSize`, invisible for 10 minutes, the invisibility renewed halfway while
  the function runs; more are fetched when `newBatchThreshold` or fewer are running;
- an empty queue is polled again after a delay that doubles from 100 ms up to `maxPollingInterval`;
- the function gets a `func.QueueMessage` with the message's `dequeue_count`; base64 bodies are decoded first
  (`messageEncoding`, default base64), and a body that does not decode goes straight to the poison queue;
- success deletes the message; a failure makes it visible again after `visibilityTimeout`, unless its dequeue count
  has reached `maxDequeueCount`: then it is copied to `<queue>-poison` and deleted. A message received with a
  dequeue count above `maxDequeueCount` (its host died while running it) is poisoned without running.

https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import Coroutine
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.functions import meta
from azure.functions.queue import QueueMessageInConverter
from azure.storage.queue import QueueClient, QueueMessage

from local.functions_host.dispatch import Invocations, Settle, TryLimit
from local.functions_host.host_json import MessageEncoding, QueueOptions
from local.functions_host.invoker import Invoker
from local.functions_host.loader import IndexedFunction
from local.functions_host.log import short_error
from local.functions_host.storage import ensure_queue

log = logging.getLogger("functions_host")

POISON_SUFFIX = "-poison"  # QueueListenerFactory.poisonQueueSuffix
INVISIBLE_S = 600  # QueueListener: `_visibilityTimeout = TimeSpan.FromMinutes(10)`
MIN_POLL_S = 0.1  # QueuePollingIntervals.Minimum
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


class QueueNameError(ValueError):
    pass


def queue_name(raw: str) -> str:
    """Lower-cased then validated, as QueueTriggerAttributeBindingProvider.NormalizeAndValidate does."""
    name = raw.strip().lower()
    if not _QUEUE_NAME.match(name):
        raise QueueNameError(f"'{raw}' is not a valid queue name (3-63 lowercase letters, digits and single hyphens)")
    return name


def decode_body(content: str, encoding: MessageEncoding) -> bytes:
    """The message body the function sees; ValueError when base64 is expected and the text is not base64."""
    if encoding is MessageEncoding.NONE:
        return content.encode("utf-8")
    try:
        return base64.b64decode(content.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("the message is not base64 (host.json extensions.queues.messageEncoding)") from None


def _iso(value) -> meta.Datum | None:
    return meta.Datum(value.isoformat(), "string") if value else None


def to_binding(message: QueueMessage, body: bytes):
    """The `func.QueueMessage` the worker builds from the body and the trigger metadata the host sends."""
    metadata = {
        "Id": meta.Datum(message.id, "string"),
        "DequeueCount": meta.Datum(int(message.dequeue_count or 0), "int"),
        "ExpirationTime": _iso(message.expires_on),
        "InsertionTime": _iso(message.inserted_on),
        "NextVisibleTime": _iso(message.next_visible_on),
        "PopReceipt": meta.Datum(message.pop_receipt, "string"),
    }
    return QueueMessageInConverter.decode(meta.Datum(body, "bytes"),
                                          trigger_metadata={k: v for k, v in metadata.items() if v is not None})


class QueuePoller:
    """The extension's QueueListener loop, whatever a message is for: receive in batches, invisible for 10 minutes
    (renewed while it runs), back-off polling, poison past the dequeue limit. `_handle` decides what a message does;
    the queue trigger runs its function with it, the blob trigger's Event Grid source (blob_webhook) a blob function.
    `enqueued()` is the in-process IMessageEnqueuedWatcher: a writer on this host wakes the poller at once."""

    def __init__(self, label: str, *, queue: QueueClient, poison: QueueClient, options: QueueOptions):
        self.label = label
        self.queue = queue
        self.poison = poison
        self.options = options
        self.tries = TryLimit(options.max_dequeue_count)
        self._wake = asyncio.Event()
        self.invocations = Invocations(on_done=self._wake.set)  # a slot is free: fetch again now if the queue had more
        self._task: asyncio.Task | None = None

    # lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"queue:{self.label}")

    async def stop(self, timeout: float) -> None:
        self._wake.set()
        await self.invocations.stop(timeout, self._task)

    def enqueued(self) -> None:
        self._wake.set()

    # polling -------------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay, healthy = MIN_POLL_S, True
        while not self.invocations.stopping:
            messages: list[QueueMessage] = []
            if len(self.invocations) <= self.options.new_batch_threshold:
                try:
                    messages = await asyncio.to_thread(self._receive)
                    if not healthy:
                        log.info("%s: queue '%s' is reachable again", self.label, self.queue.queue_name)
                    healthy = True
                except ResourceNotFoundError:
                    pass  # the extension waits for the queue to exist; it does not create it
                except Exception as exc:
                    if healthy:
                        log.warning("%s: cannot read queue '%s' (%s); retrying", self.label, self.queue.queue_name,
                                    short_error(exc))
                    healthy = False
            for message in messages:
                self.invocations.start(self._process(message))
            delay = MIN_POLL_S if messages else min(self.options.max_polling_interval_s, delay * 2)
            try:
                await asyncio.wait_for(self._wake.wait(), 0 if messages else delay)
            except TimeoutError:
                pass
            self._wake.clear()

    def _receive(self) -> list[QueueMessage]:
        return list(self.queue.receive_messages(messages_per_page=self.options.batch_size,
                                                max_messages=self.options.batch_size,
                                                visibility_timeout=INVISIBLE_S))

    async def _process(self, message: QueueMessage) -> None:
        try:
            await self._handle(message)
        except Exception as exc:  # storage trouble: the message reappears after its invisibility and is retried
            log.warning("%s: message %s will be retried (%s)", self.label, message.id, short_error(exc))

    async def _handle(self, message: QueueMessage) -> None:
        raise NotImplementedError

    async def _run_invisible(self, message: QueueMessage, work: Coroutine[Any, Any, bool]) -> None:
        """Runs `work` (True: it succeeded) with the message kept invisible, then deletes the message, makes it
        visible again after `visibilityTimeout`, or poisons it on its last try."""
        renewer = asyncio.create_task(self._keep_invisible(message))
        try:
            ok = await work
        finally:
            renewer.cancel()
        settle = self.tries.settle(ok, int(message.dequeue_count or 0))
        if settle is Settle.DONE:
            await asyncio.to_thread(self.queue.delete_message, message.id, message.pop_receipt)
        elif settle is Settle.POISON:
            await asyncio.to_thread(self._to_poison, message)
        else:
            await asyncio.to_thread(self.queue.update_message, message.id, message.pop_receipt,
                                    visibility_timeout=int(self.options.visibility_timeout_s))

    async def _keep_invisible(self, message: QueueMessage) -> None:
        """Renew the invisibility halfway to its end while the function runs (UpdateQueueMessageVisibilityCommand);
        each update gives a new pop receipt, which the final delete or release needs."""
        while True:
            await asyncio.sleep(INVISIBLE_S / 2)
            try:
                updated = await asyncio.to_thread(self.queue.update_message, message.id, message.pop_receipt,
                                                  visibility_timeout=INVISIBLE_S)
                message.pop_receipt = updated.pop_receipt
                message.next_visible_on = updated.next_visible_on
            except Exception as exc:
                log.debug("could not renew the invisibility of message %s: %s", message.id, short_error(exc))

    def _to_poison(self, message: QueueMessage) -> None:
        ensure_queue(self.poison)
        self.poison.send_message(message.content or "")
        self.queue.delete_message(message.id, message.pop_receipt)
        log.warning("Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
                    self.options.max_dequeue_count, self.poison.queue_name)


class QueueTriggerListener(QueuePoller):
    """`queue` and `poison` are plain-text clients (no encode/decode policy): bodies are decoded here, so a message
    that is not base64 can be moved to the poison queue as it is, as the extension's decoding-failed handler does."""

    def __init__(self, fn: IndexedFunction, *, queue: QueueClient, poison: QueueClient, invoker: Invoker,
                 options: QueueOptions):
        super().__init__(f"Queue trigger 'Functions.{fn.name}'", queue=queue, poison=poison, options=options)
        self.fn = fn
        self.invoker = invoker

    # one message ---------------------------------------------------------------------------------------------
    async def _handle(self, message: QueueMessage) -> None:
        if self.tries.spent(int(message.dequeue_count or 0)):
            await asyncio.to_thread(self._to_poison, message)
            return
        try:
            body = decode_body(message.content or "", self.options.message_encoding)
        except ValueError as exc:
            log.warning("%s: message %s: %s", self.label, message.id, exc)
            await asyncio.to_thread(self._to_poison, message)
            return
        await self._run_invisible(message, self._invoke(message, body))

    async def _invoke(self, message: QueueMessage, body: bytes) -> bool:
        reason = f"New queue message detected on '{self.queue.queue_name}'."
        return (await self.invoker.invoke(self.fn, to_binding(message, body), reason=reason)).ok
