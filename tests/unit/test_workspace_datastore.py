"""INFERENCE_DATASTORE: the workspace datastore the data collector writes to, resolved to the blob account URL and
container the drift check reads. MLClient.datastores is replaced by a recording double (the Azure control plane is
unreachable here) that answers the SDK's own entities: `AzureBlobDatastore(name, account_name, container_name,
endpoint, protocol)` and `AzureFileDatastore` (azure-ai-ml 1.35.2 azure/ai/ml/entities/_datastore/azure_storage.py),
and an unknown name with the REST client's 404, `ResourceNotFoundError`."""

from __future__ import annotations

import pytest
from azure.ai.ml.entities import AzureBlobDatastore, AzureFileDatastore
from azure.core.exceptions import ResourceNotFoundError

from shared.adapters.workspace_datastore import BlobLocation, DatastoreUnusable, blob_location

WORKSPACE_CONTAINER = "azureml-blobstore-0f3c6a1e-5b7d-4a5e-9c1f-2d8e7b6a5c4d"


class RecordingDatastores:
    """`MLClient.datastores.get(name)`: records each call, answers the entity registered under the name."""

    def __init__(self, *entities):
        self.entities = {e.name: e for e in entities}
        self.calls: list[tuple[str, dict]] = []

    def get(self, name: str, **kwargs):
        self.calls.append((name, kwargs))
        if name not in self.entities:
            raise ResourceNotFoundError(f"DatastoreNotFound: {name}")
        return self.entities[name]


def workspace_blob_store(**overrides) -> AzureBlobDatastore:
    fields = {"name": "workspaceblobstore", "account_name": "stmlabc123", "container_name": WORKSPACE_CONTAINER,
              "endpoint": "core.windows.net", "protocol": "https"}
    return AzureBlobDatastore(**{**fields, **overrides})


def test_the_workspace_blob_store_is_its_account_blob_endpoint_and_container():
    datastores = RecordingDatastores(workspace_blob_store())
    location = blob_location(datastores, "workspaceblobstore")
    assert location == BlobLocation("https://stmlabc123.blob.core.windows.net", WORKSPACE_CONTAINER)
    assert str(location) == f"https://stmlabc123.blob.core.windows.net/{WORKSPACE_CONTAINER}"
    assert datastores.calls == [("workspaceblobstore", {})]  # one lookup, no secrets asked for


def test_another_cloud_keeps_its_storage_suffix():
    datastores = RecordingDatastores(workspace_blob_store(name="collected", endpoint="core.chinacloudapi.cn"))
    assert blob_location(datastores, "collected").account_url == "https://stmlabc123.blob.core.chinacloudapi.cn"


def test_an_unknown_datastore_is_named_in_the_error():
    with pytest.raises(DatastoreUnusable, match="'missingstore' does not exist"):
        blob_location(RecordingDatastores(workspace_blob_store()), "missingstore")


def test_a_datastore_that_is_not_blob_storage_is_refused_by_name():
    files = AzureFileDatastore(name="workspacefilestore", account_name="stmlabc123", file_share_name="code")
    with pytest.raises(DatastoreUnusable, match="'workspacefilestore' is of type AzureFile, not AzureBlob"):
        blob_location(RecordingDatastores(files), "workspacefilestore")
