"""Storage clients from settings: a connection string (Azurite, or an account key) or an account URL with
an Azure AD credential (managed identity in Azure). The same SDK code runs against Azurite and Azure."""

from __future__ import annotations

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared.settings import Settings


def blob_service(settings: Settings, credential=None) -> BlobServiceClient:
    if settings.storage_account_url:
        return BlobServiceClient(settings.storage_account_url, credential=credential)
    return BlobServiceClient.from_connection_string(settings.storage_connection)


def table_service(settings: Settings, credential=None) -> TableServiceClient:
    if settings.storage_account_url:
        url = settings.storage_account_url.replace(".blob.", ".table.")
        return TableServiceClient(url, credential=credential)
    return TableServiceClient.from_connection_string(settings.storage_connection)


def ensure_container(service: BlobServiceClient, name: str) -> None:
    try:
        service.create_container(name)
    except ResourceExistsError:
        pass


def ensure_table(service: TableServiceClient, name: str) -> TableClient:
    try:
        service.create_table(name)
    except ResourceExistsError:
        pass
    return service.get_table_client(name)
