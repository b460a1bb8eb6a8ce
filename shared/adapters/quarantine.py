"""Rejected uploads: moved out of the incoming container with a JSON reason beside them, never deleted."""

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
        """Store the file under quarantine/{stamp}/{blob name} plus `.reason.json`; return the blob path."""
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
