"""Rejected uploads: moved out of the incoming container with a JSON reason beside them, never deleted.

An upload whose *name* is refused (shared.domain.blob_names) is kept under `rejected/<sha256 of the name>/` and
never addressed by its name: not read again, not deleted."""

from __future__ import annotations

import json
import time

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings


class Quarantine:
    def __init__(self, blobs: BlobServiceClient, container: str):
        self._blobs = blobs
        self._container = container

    def put(self, source: str, data: bytes, reason: dict, *, remove_source: bool = True) -> str:
        """Store the file under quarantine/{stamp}/{blob name} plus `.reason.json`; return the blob path.
        `source` must be a name that passed `blob_names.name_problem` (it is used in paths and the delete)."""
        container, _, name = source.partition("/")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = f"{stamp}/{name}"
        self._blobs.get_blob_client(self._container, path).upload_blob(data, overwrite=True)
        self._blobs.get_blob_client(self._container, path + ".reason.json").upload_blob(
            json.dumps(reason, indent=2).encode(), overwrite=True,
            content_settings=ContentSettings(content_type="application/json"))
        if remove_source:
            try:
                self._blobs.get_blob_client(container, name).delete_blob()
            except ResourceNotFoundError:
                pass
        return f"{self._container}/{path}"

    def put_refused_name(self, name_sha256: str, record_id: str, data: bytes, reason: dict,
                         metadata: dict[str, str]) -> str:
        """Keep an upload whose name was refused as `rejected/{sha256 of the name}/{record id}` (one per upload, so a
        second upload under the same name does not replace the first) with `metadata` on the blob (ASCII values,
        the reason and the escaped name) and the full `.reason.json` beside it. The source blob is left where it is:
        addressing it by that name could reach another blob. Returns the blob path."""
        if not (len(name_sha256) == 64 and all(c in "0123456789abcdef" for c in name_sha256)):
            raise ValueError("name_sha256 must be a lowercase hex SHA-256")
        if not record_id.replace("-", "").isalnum():
            raise ValueError("record_id must be letters, digits and '-'")
        path = f"rejected/{name_sha256}/{record_id}"
        self._blobs.get_blob_client(self._container, path).upload_blob(
            data, overwrite=True, metadata={k: v[:1024] for k, v in metadata.items()})
        self._blobs.get_blob_client(self._container, path + ".reason.json").upload_blob(
            json.dumps(reason, indent=2).encode(), overwrite=True,
            content_settings=ContentSettings(content_type="application/json"))
        return f"{self._container}/{path}"
