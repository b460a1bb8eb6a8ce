"""Polling helper for tests that watch real processes and storage."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float = 15.0, every: float = 0.1, what: str = "condition"):
    """Return the first truthy value of `predicate()`, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")
