"""An uploaded file as the blob trigger hands it over (and as the reconcile timer reads it again)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UploadedBlob:
    name: str  # container/blob path, as the blob trigger names it
    data: bytes
    etag: str
    uploaded_at: float | None  # blob Last-Modified


@dataclass(frozen=True)
class ListedBlob:
    """A blob of the incoming container as a listing shows it: enough to tell whether an upload has a record."""

    name: str  # container/blob path
    etag: str
    modified: float  # Last-Modified, epoch seconds
