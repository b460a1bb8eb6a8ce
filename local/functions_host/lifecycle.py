"""Stopping within a bound: a listener's asyncio tasks (timers, blob and queue triggers stop the same way), the
tasks left when the host stops, and the threads its storage calls run on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from concurrent.futures import Executor


async def stop_tasks(tasks: Iterable[asyncio.Task | None], timeout: float) -> None:
    """Let the tasks finish for up to `timeout` seconds, then cancel the rest and give them 2 s to unwind."""
    running = [t for t in tasks if t is not None]
    if not running:
        return
    _, pending = await asyncio.wait(running, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=2)


async def cancel_remaining(grace: float) -> None:
    """Cancel every task still pending on this loop (a listener whose stop ran past the shutdown timeout): one
    awaiting a storage call in a thread ends at once, the call itself is left to `threads_finished`."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=grace)


def threads_finished(executor: Executor, grace: float) -> bool:
    """Shut the executor down, waiting at most `grace` seconds for the calls its threads are in; False when some
    are still running. Not `loop.shutdown_default_executor()` under `wait_for`: in Python 3.11 it joins its helper
    thread in a `finally`, so a cancelled wait still blocks until every storage call (retries and all) returns
    (CPython Lib/asyncio/base_events.py, 3.11; 3.12 gave it a `timeout`)."""
    executor.shutdown(wait=False, cancel_futures=True)
    joiner = threading.Thread(target=executor.shutdown, kwargs={"wait": True}, name="executor-join", daemon=True)
    joiner.start()
    joiner.join(grace)
    return not joiner.is_alive()
