"""The two model slots of the local scoring endpoint and which one is live: deploy, rollback, auto-rollback.

A switch replaces one reference under a lock; a request reads that reference once, so requests in flight
during a switch finish on the model they started with.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.scoring.contract import DEPLOYMENT_HEADER
from shared.scoring.runtime import ScoringModel

log = logging.getLogger("scoring")

SLOTS = ("blue", "green")
ROLLBACK_WINDOW = 50
ROLLBACK_ERROR_RATE = 0.10
ROLLBACK_MIN_FAILURES = 3
EVENTS_KEPT = 50


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class NothingToRollBack(RuntimeError):
    """The other slot is empty, nothing is live, or not the version the caller meant; safe to return (409)."""


@dataclass(frozen=True)
class Loaded:
    """A model sitting in a slot, live or not."""

    model: ScoringModel
    loaded_at: str


@dataclass(eq=False)
class Generation:
    """One stretch of traffic on one slot, from a switch to the next. A request counts against the generation
    it started on, so a late answer from the old model never counts against the new one."""

    slot: str
    model: ScoringModel
    since: str
    watch: int  # auto-rollback watches while requests <= watch (0: not watched)
    requests: int = 0
    errors: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # only the header a managed endpoint sends: a client learns the version from the deployment's name
        self.headers = [(DEPLOYMENT_HEADER.encode(), self.slot.encode())]


class BlueGreen:
    """The two slots and which one is live. Every switch happens under `_lock` and replaces `live` in one
    assignment; scoring reads `live` once per request and never takes the lock."""

    def __init__(self, *, window: int = ROLLBACK_WINDOW, error_rate: float = ROLLBACK_ERROR_RATE,
                 min_failures: int = ROLLBACK_MIN_FAILURES):
        if window < 0 or not 0.0 <= error_rate < 1.0 or min_failures < 1:
            raise ValueError("rollback window must be >= 0, error rate in [0, 1) and min failures >= 1")
        self.window, self.error_rate, self.min_failures = window, error_rate, min_failures
        self.slots: dict[str, Loaded | None] = dict.fromkeys(SLOTS)
        self.live: Generation | None = None
        self.deploying: str | None = None  # version being loaded / smoke-tested
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self._lock = threading.Lock()

    def live_version(self) -> str | None:
        """The version serving now (None before the first deploy)."""
        live = self.live
        return live.model.version if live else None

    @staticmethod
    def other(slot: str | None) -> str:
        return "green" if slot == "blue" else "blue"

    def deploy(self, model: ScoringModel, reason: str | None = None) -> tuple[Generation, Generation | None]:
        """Put `model` into the slot that is idle now and send traffic to it; watched when there is a way back."""
        with self._lock:
            previous = self.live
            slot = self.other(previous.slot if previous else None)
            self.slots[slot] = Loaded(model, _now())
            self.live = Generation(slot, model, _now(), watch=self.window if previous else 0)
            self._event("deploy", previous, reason)
            return self.live, previous

    def rollback(self, kind: str = "rollback", reason: str | None = None, *, only_from: Generation | None = None,
                 from_version: str | None = None) -> tuple[Generation, Generation] | None:
        """Traffic to the other slot's model. With `only_from`, only if that generation is still live (an
        auto-rollback must not undo a switch that happened meanwhile); then None means nothing was done.
        With `from_version`, only if that version is live (a caller's rollback after an auto-rollback would
        otherwise bring the bad model back)."""
        with self._lock:
            current = self.live
            if only_from is not None and current is not only_from:
                return None
            if current is None:
                raise NothingToRollBack("nothing to roll back: no model has been deployed yet")
            if from_version is not None and current.model.version != from_version:
                raise NothingToRollBack(f"nothing rolled back: model v{from_version} is not live (v"
                                        f"{current.model.version} is, on slot {current.slot})")
            target = self.other(current.slot)
            loaded = self.slots[target]
            if loaded is None:
                raise NothingToRollBack(f"nothing to roll back to: slot {target} is empty (only model "
                                        f"v{current.model.version} has been deployed)")
            self.live = Generation(target, loaded.model, _now(), watch=0)
            self._event(kind, current, reason)
            return self.live, current

    def record(self, generation: Generation, status: int) -> None:
        """Count a finished request; a server-error spike in a watched generation rolls it back."""
        generation.requests += 1
        if status < 500:
            return
        generation.errors += 1
        if generation.requests <= generation.watch and generation.errors >= self.min_failures \
                and generation.errors > self.error_rate * generation.requests:
            self._auto_rollback(generation)

    def _auto_rollback(self, generation: Generation) -> None:
        reason = (f"{generation.errors} of the first {generation.requests} requests on model "
                  f"v{generation.model.version} failed with a server error (limit {self.error_rate:.0%} "
                  f"and {self.min_failures} failures within {self.window} requests)")
        try:
            switched = self.rollback("auto_rollback", reason, only_from=generation)
        except NothingToRollBack:
            switched = None
        if switched is not None:
            live, _ = switched
            log.error("auto-rollback to model v%s (slot %s): %s", live.model.version, live.slot, reason)

    def _event(self, kind: str, previous: Generation | None, reason: str | None) -> None:
        live = self.live
        assert live is not None
        self.events.append({"event": kind, "at": live.since, "slot": live.slot, "version": live.model.version,
                            "from_slot": previous.slot if previous else None,
                            "from_version": previous.model.version if previous else None, "reason": reason})

    def status(self) -> dict[str, Any]:
        live = self.live
        return {
            "live": live.slot if live else None,
            "slots": {name: self._slot_view(name, live) for name in SLOTS},
            "counters": None if live is None else {
                "slot": live.slot, "version": live.model.version, "since": live.since,
                "requests": live.requests, "errors": live.errors},
            "auto_rollback": {"window": self.window, "error_rate": self.error_rate,
                              "min_failures": self.min_failures,
                              "watching": bool(live and live.requests < live.watch)},
            "deploying": self.deploying,
            "events": list(self.events),
        }

    def _slot_view(self, name: str, live: Generation | None) -> dict[str, Any]:
        loaded = self.slots[name]
        return {"live": bool(live and live.slot == name),
                "version": loaded.model.version if loaded else None,
                "model_dir": str(loaded.model.model_dir) if loaded else None,
                "loaded_at": loaded.loaded_at if loaded else None}
