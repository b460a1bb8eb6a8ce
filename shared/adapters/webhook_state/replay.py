"""The replay guard: a second delivery of the same signed request is refused."""

from __future__ import annotations

import re

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.data.tables import TableClient

from shared.adapters.webhook_state.tables import delete_where

_REPLAY_PK = "replay"
_HEX = re.compile(r"[0-9a-f]{1,128}")


class ReplayGuard:
    """Refuses a second delivery of the same signed request (see webhook_signature.replay_key).

    `window_s` must cover the signature tolerance on both sides (300 s old + 300 s skew): an entry is only purged
    once its timestamp is too old for `verify` to accept anyway, so purging never affects correctness.
    """

    def __init__(self, table: TableClient, window_s: float = 600, purge_every_s: float | None = 600):
        self._table = table
        self.window_s = window_s
        self._purge_every_s = purge_every_s
        self._next_purge = 0.0

    def remember(self, signature_hex: str, timestamp: int, now: float) -> bool:
        """True the first time this signature is seen, False for a replay."""
        key = signature_hex.lower()
        if not _HEX.fullmatch(key):
            raise ValueError("signature_hex must be 1-128 hex characters")
        entity = {"PartitionKey": _REPLAY_PK, "RowKey": key, "timestamp": float(timestamp), "seen_at": float(now),
                  "expires_at": float(timestamp) + self.window_s}
        try:
            self._table.create_entity(entity)
        except ResourceExistsError:
            return False
        if self._purge_every_s is not None and now >= self._next_purge:
            self._next_purge = now + self._purge_every_s
            try:
                self.purge(now)
            except HttpResponseError:
                pass  # opportunistic: the next purge catches up
        return True

    def purge(self, now: float) -> int:
        """Delete entries whose timestamp left the window; returns how many."""
        return delete_where(self._table, "PartitionKey eq @pk and expires_at lt @now",
                             {"pk": _REPLAY_PK, "now": float(now)})
