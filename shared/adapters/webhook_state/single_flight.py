"""The drift check's single-flight lease: at most one holder at a time across every Functions instance."""

from __future__ import annotations

from dataclasses import dataclass

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient

from shared.adapters.webhook_state.tables import delete_if_unchanged, replace_if_unchanged

_CLAIM_PK = "claim"


@dataclass(frozen=True)
class Claim:
    """`acquired`: this caller holds the lease until `expires_at`. Otherwise `holder` / `location` name who
    does (the running check's audit id and where to read it)."""

    acquired: bool
    holder: str
    location: str = ""
    since: float = 0.0
    expires_at: float = 0.0


class SingleFlight:
    """At most one holder of `name` at a time across every Functions instance: a row created if it does not exist,
    or taken over on its ETag once its lease expired (a holder that died frees it after `lease_s`). Not an
    in-memory lock: two instances racing both try the same conditional write, and one wins."""

    def __init__(self, table: TableClient, name: str, lease_s: float = 900):
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        self._table = table
        self._row = name
        self.lease_s = lease_s

    def acquire(self, holder: str, now: float, location: str = "") -> Claim:
        fresh = {"PartitionKey": _CLAIM_PK, "RowKey": self._row, "holder": holder, "location": location,
                 "since": float(now), "expires_at": float(now) + self.lease_s}
        for _ in range(10):
            try:
                self._table.create_entity(fresh)
                return Claim(True, holder, location, float(now), float(now) + self.lease_s)
            except ResourceExistsError:
                pass
            try:
                entity = self._table.get_entity(_CLAIM_PK, self._row)
            except ResourceNotFoundError:
                continue  # released meanwhile
            if float(entity.get("expires_at", 0)) > now:
                return Claim(False, entity.get("holder", ""), entity.get("location", ""),
                             float(entity.get("since", 0)), float(entity.get("expires_at", 0)))
            try:
                replace_if_unchanged(self._table, fresh, entity)
                return Claim(True, holder, location, float(now), float(now) + self.lease_s)
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
        return Claim(False, "", "")

    def release(self, holder: str) -> bool:
        """Drop the lease if `holder` still holds it (a lease taken over after expiry is left alone)."""
        try:
            entity = self._table.get_entity(_CLAIM_PK, self._row)
        except ResourceNotFoundError:
            return False
        if entity.get("holder") != holder:
            return False
        try:
            delete_if_unchanged(self._table, _CLAIM_PK, self._row, entity)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True
