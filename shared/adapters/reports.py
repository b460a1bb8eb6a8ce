"""The reports container, read back: drift reports for GET /api/drift-reports/{id}, the replay's figures for the
dashboard. Writing stays in bootstrap.report_writer (the drift check's side)."""

from __future__ import annotations

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient


class ContainerReports:
    """ReportReader on one blob container (Azurite locally, the app's storage account in Azure)."""

    def __init__(self, container: ContainerClient):
        self._container = container

    def read(self, name: str, *, max_bytes: int) -> bytes | None:
        blob = self._container.get_blob_client(name)
        try:
            download = blob.download_blob(max_concurrency=1)
        except ResourceNotFoundError:
            return None
        if (download.size or 0) > max_bytes:
            return None
        return download.readall()
