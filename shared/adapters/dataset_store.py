"""Dataset versions: an immutable blob per version plus a table row of metadata (hash, rows, source).

Versions are numbered 1, 2, 3... by an optimistic-concurrency counter entity, so two uploads landing at
once never get the same number. Re-registering the same source blob + ETag (a retried trigger) returns
the version registered the first time instead of a new one — also when the two run at the same time: Event Grid
delivers a BlobCreated at least once and the blob trigger's Event Grid source runs every delivery (no receipt), so
two deliveries of one upload can both own its content claim at once. The version number is therefore written into
that claim (a conditional update): whoever sets it first decides the number, the other registers the same one.
"""

from __future__ import annotations

import time

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.storage.blob import BlobServiceClient, ContentSettings

from shared.adapters.tables import from_entity, to_entity
from shared.domain.records import DatasetVersion

_COUNTER = "_counter"


class DatasetStore:
    def __init__(self, blobs: BlobServiceClient, table: TableClient, *, container: str, name: str):
        self._blobs = blobs
        self._table = table
        self._container = container
        self._name = name

    def find_by_source(self, source_blob: str, source_etag: str) -> DatasetVersion | None:
        query = "PartitionKey eq @pk and source_blob eq @src and source_etag eq @etag"
        rows = self._table.query_entities(query, parameters={"pk": self._name, "src": source_blob,
                                                             "etag": source_etag})
        for row in rows:
            return from_entity(DatasetVersion, row)
        return None

    def claim_content(self, content_hash: str, source_blob: str, source_etag: str) -> dict | None:
        """Claim these canonical bytes for one upload (a conditional insert: of concurrent uploads of the same rows,
        exactly one wins). None: this upload owns them (first, or the host retrying the same blob); otherwise the
        claim of the upload that got them first ({"source_blob", "source_etag"})."""
        entity = {"PartitionKey": f"{self._name}-content", "RowKey": content_hash.replace(":", "-"),
                  "source_blob": source_blob, "source_etag": source_etag}
        try:
            self._table.create_entity(entity)
            return None
        except ResourceExistsError:
            owner = self._table.get_entity(entity["PartitionKey"], entity["RowKey"])
        if (owner.get("source_blob"), owner.get("source_etag")) == (source_blob, source_etag):
            return None
        return {"source_blob": owner.get("source_blob"), "source_etag": owner.get("source_etag")}

    def find_by_hash(self, content_hash: str) -> DatasetVersion | None:
        """The first version with these canonical bytes (same data in any dialect, under any name)."""
        rows = self._table.query_entities("PartitionKey eq @pk and content_hash eq @h",
                                          parameters={"pk": self._name, "h": content_hash})
        found = sorted((from_entity(DatasetVersion, r) for r in rows), key=lambda d: d.version)
        return found[0] if found else None

    def register(self, data: bytes, *, content_hash: str, rows: int, columns: int, source_blob: str,
                 source_etag: str, dialect: str) -> DatasetVersion:
        existing = self.find_by_source(source_blob, source_etag)
        if existing:
            return existing
        version = self._claimed_version(content_hash, source_blob, source_etag)
        path = f"{self._name}/v{version}/data.csv"
        blob = self._blobs.get_blob_client(self._container, path)
        try:
            blob.upload_blob(data, overwrite=False, content_settings=ContentSettings(content_type="text/csv"),
                             metadata={"content_hash": content_hash, "source_blob": source_blob[:1000]})
        except ResourceExistsError:
            # versions are immutable: only the same upload's other delivery may have written these bytes already
            written = blob.get_blob_properties().metadata or {}
            if written.get("content_hash") != content_hash:
                raise RuntimeError(f"dataset blob {self._container}/{path} already exists; "
                                   "versions are immutable") from None
        record = DatasetVersion(name=self._name, version=version, container=self._container, path=path,
                                content_hash=content_hash, rows=rows, columns=columns, source_blob=source_blob,
                                source_etag=source_etag, dialect=dialect, registered_at=time.time())
        try:
            self._table.create_entity(to_entity(record, self._name, f"{version:010d}"))
        except ResourceExistsError:  # the other delivery recorded it first: its record is the version
            return self.get(version) or record
        return record

    def _claimed_version(self, content_hash: str, source_blob: str, source_etag: str) -> int:
        """The version number of these rows: the one already written into their content claim by this upload's
        other delivery (or an earlier, killed attempt), else a new number written there first-wins. Rows
        registered without their claim (no `claim_content` by this upload before) get a new number."""
        key = (f"{self._name}-content", content_hash.replace(":", "-"))
        for _ in range(50):
            try:
                claim = self._table.get_entity(*key)
            except ResourceNotFoundError:
                return self._next_version()
            if (claim.get("source_blob"), claim.get("source_etag")) != (source_blob, source_etag):
                return self._next_version()  # a caller that did not claim them: numbered as before claims existed
            if claim.get("version"):
                return int(claim["version"])
            claim["version"] = self._next_version()
            try:
                self._table.update_entity(claim, mode=UpdateMode.MERGE, etag=claim.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
                return int(claim["version"])
            except ResourceModifiedError:  # the other delivery numbered them first: its number (ours is skipped)
                continue
        raise RuntimeError("could not number the dataset version after 50 attempts (heavy contention)")

    def _next_version(self) -> int:
        for _ in range(50):
            try:
                counter = self._table.get_entity(self._name, _COUNTER)
            except ResourceNotFoundError:
                try:
                    self._table.create_entity({"PartitionKey": self._name, "RowKey": _COUNTER, "last": 1})
                    return 1
                except ResourceExistsError:
                    continue
            counter["last"] = int(counter["last"]) + 1
            try:
                self._table.update_entity(counter, mode=UpdateMode.REPLACE, etag=counter.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
                return int(counter["last"])
            except ResourceModifiedError:
                time.sleep(0.01)
        raise RuntimeError("could not allocate a dataset version after 50 attempts (heavy contention)")

    def get(self, version: int) -> DatasetVersion | None:
        try:
            return from_entity(DatasetVersion, self._table.get_entity(self._name, f"{version:010d}"))
        except ResourceNotFoundError:
            return None

    def list(self) -> list[DatasetVersion]:
        rows = self._table.query_entities("PartitionKey eq @pk and RowKey ne @c",
                                          parameters={"pk": self._name, "c": _COUNTER})
        return sorted((from_entity(DatasetVersion, r) for r in rows), key=lambda d: d.version)

    def latest(self) -> DatasetVersion | None:
        versions = self.list()
        return versions[-1] if versions else None

    def read(self, version: DatasetVersion) -> bytes:
        return self._blobs.get_blob_client(version.container, version.path).download_blob().readall()
