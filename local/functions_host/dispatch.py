"""What the three storage listeners (blob polling, blob Event Grid source, queue trigger) share: the try count that
decides between running again and the poison queue, and the bounded set of invocations a listener has started.

Tries are counted as the Storage extensions count them: each delivery carries how many times it has been handed to
the function (a queue message's dequeueCount, a blob receipt's DequeueCount, the blob trigger queue's message for
the Event Grid source); a failed try is retried until host.json `extensions.queues.maxDequeueCount` tries have
failed, then the delivery goes to its poison queue; one that arrives already past the limit (its host died while
running it) is poisoned without running (the Storage queues extension's QueueProcessor.cs, in Azure/azure-webjobs-sdk
and azure-sdk-for-net: BeginProcessingMessageAsync poisons when `DequeueCount > MaxDequeueCount`,
CompleteProcessingMessageAsync when `DequeueCount >= MaxDequeueCount` after a failure; the blob trigger uses the same
QueuesOptions, SharedBlobQueueListenerFactory.cs). Where each count is kept and what a retry or a poisoning does
stays with each listener."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from enum import Enum
from typing import Any

from local.functions_host.lifecycle import stop_tasks


class Settle(Enum):
    """What becomes of a delivery after one try."""

    DONE = "done"  # succeeded: completed or deleted
    RETRY = "retry"  # failed, tries left: handed to the function again later
    POISON = "poison"  # failed on the last try: to the poison queue


class TryLimit:
    """host.json `extensions.queues.maxDequeueCount` (at least 1), applied to a try's 1-based number."""

    def __init__(self, max_tries: int):
        self.max_tries = max(1, max_tries)

    def spent(self, this_try: int) -> bool:
        """The try about to start is past the limit: poison the delivery without running it."""
        return this_try > self.max_tries

    def settle(self, ok: bool, this_try: int) -> Settle:
        if ok:
            return Settle.DONE
        return Settle.POISON if this_try >= self.max_tries else Settle.RETRY


class Invocations:
    """The invocation tasks a listener has started, at most `limit` running a try at once when it has one (blob
    triggers: host.json `extensions.blobs.maxDegreeOfParallelism`; queue triggers bound theirs by fetching), and
    stopped together with the listener's own tasks."""

    def __init__(self, limit: int | None = None, on_done: Callable[[], None] | None = None):
        self._slots = asyncio.Semaphore(limit) if limit is not None else None
        self._on_done = on_done
        self._tasks: set[asyncio.Task] = set()
        self.stopping = False

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, work: Coroutine[Any, Any, None], name: str | None = None) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if self._on_done is not None:
            self._on_done()

    def slot(self) -> AbstractAsyncContextManager:
        """Held while a try runs; free when there is no limit."""
        return self._slots if self._slots is not None else contextlib.nullcontext()

    async def stop(self, timeout: float, *also: asyncio.Task | None) -> None:
        """No new invocations; the running ones (and `also`, the listener's loop) get `timeout` to finish."""
        self.stopping = True
        await stop_tasks((*also, *self._tasks), timeout)
