"""The incoming container read back by name: an upload whose delivery was killed half-way is handled again from
the blob itself (shared.services.on_upload.resume_interrupted_uploads)."""

from __future__ import annotations

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from shared.domain.uploads import ListedBlob, UploadedBlob


class IncomingBlobs:
    def __init__(self, blobs: BlobServiceClient, container: str):
        self._blobs = blobs
        self._container = container

    def listed(self, modified_after: float) -> list[ListedBlob]:
        """The incoming container's blobs written after `modified_after` (one listing; names as listed, unchecked:
        the caller checks a name before any call that uses it)."""
        found = []
        for props in self._blobs.get_container_client(self._container).list_blobs():
            modified = props.last_modified.timestamp() if props.last_modified else 0.0
            if modified > modified_after:
                found.append(ListedBlob(f"{self._container}/{props.name}", str(props.etag or "").strip('"'), modified))
        return found

    def read(self, name: str) -> UploadedBlob | None:
        """`container/blob` as the blob trigger names it; None when it is gone (quarantined, deleted)."""
        container, _, blob = name.partition("/")
        if not container or not blob:
            return None
        try:
            download = self._blobs.get_blob_client(container, blob).download_blob()
            data = download.readall()
        except ResourceNotFoundError:
            return None
        props = download.properties
        modified = props.last_modified.timestamp() if props.last_modified else None
        return UploadedBlob(name=name, data=data, etag=str(props.etag or "").strip('"'), uploaded_at=modified)
