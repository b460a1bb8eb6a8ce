"""The try rule and the bounded invocation set the host's three storage listeners share (local/functions_host/
dispatch.py). The listeners themselves are tested against Azurite in test_functions_host.py and tests/parity."""

from __future__ import annotations

import asyncio

import pytest

from local.functions_host.dispatch import Invocations, Settle, TryLimit


@pytest.mark.parametrize(("ok", "this_try", "settle"), [
    (True, 1, Settle.DONE), (True, 4, Settle.DONE),
    (False, 1, Settle.RETRY), (False, 3, Settle.RETRY),
    (False, 4, Settle.POISON),  # QueueProcessor.CompleteProcessingMessageAsync: DequeueCount >= MaxDequeueCount
])
def test_a_failed_try_is_retried_until_the_last_one(ok, this_try, settle):
    assert TryLimit(4).settle(ok, this_try) is settle


def test_a_delivery_past_the_limit_is_poisoned_without_running():
    # QueueProcessor.BeginProcessingMessageAsync: DequeueCount > MaxDequeueCount (its host died while running it)
    limit = TryLimit(4)
    assert not limit.spent(4) and limit.spent(5)


def test_the_limit_is_at_least_one_try():
    assert TryLimit(0).max_tries == 1 and TryLimit(0).settle(False, 1) is Settle.POISON


def test_at_most_limit_tries_run_at_once_and_stop_ends_the_rest():
    async def scenario() -> tuple[int, int, bool]:
        invocations = Invocations(2)
        running = peak = 0
        release = asyncio.Event()
        finished: list[int] = []

        async def one(i: int) -> None:
            nonlocal running, peak
            async with invocations.slot():
                running += 1
                peak = max(peak, running)
                await release.wait()
                running -= 1
            finished.append(i)

        for i in range(5):
            invocations.start(one(i))
        while running < 2:
            await asyncio.sleep(0)
        started = len(invocations)
        await invocations.stop(0.05)
        return peak, started, invocations.stopping and len(invocations) == 0 and not finished

    peak, started, stopped = asyncio.run(scenario())
    assert peak == 2 and started == 5 and stopped


def test_no_limit_and_a_callback_when_each_ends():
    async def scenario() -> tuple[int, int]:
        ended: list[None] = []
        invocations = Invocations(on_done=lambda: ended.append(None))
        gate = asyncio.Event()
        running = 0

        async def one() -> None:
            nonlocal running
            async with invocations.slot():
                running += 1
                await gate.wait()

        for _ in range(3):
            invocations.start(one())
        while running < 3:
            await asyncio.sleep(0)
        gate.set()
        await invocations.stop(5)
        return running, len(ended)

    assert asyncio.run(scenario()) == (3, 3)
