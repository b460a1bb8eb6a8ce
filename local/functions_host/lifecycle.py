"""Stopping a listener's asyncio tasks within a bound (timers and blob triggers stop the same way)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


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
