"""Where an Azure ML datastore keeps its blobs: the account URL and container the drift check reads the data
collector's `modelDataCollector/` from (INFERENCE_DATASTORE).

Why a lookup and not a fixed URL: Azure ML's data collector writes to the workspace's default blob datastore,
`workspaceblobstore`, unless a collection's `data.path` names another: the YAML reference's DataCollector table
gives `collections.<collection_name>.data.path` the default `azureml://datastores/workspaceblobstore/paths/
modelDataCollector/<endpoint_name>/<deployment_name>/<collection_name>`
(https://learn.microsoft.com/azure/machine-learning/reference-yaml-deployment-kubernetes-online, "DataCollector";
https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data, "Store collected data in a blob
storage"), and azure-ai-ml registers the collected data assets at that path (azure-ai-ml 1.35.2
azure/ai/ml/constants/_deployment.py DEFAULT_MDC_PATH, operations/_online_deployment_operations.py
`_register_collection_data_assets`). shared.adapters.azure_online.deployer.data_collector() sets
no `data`, so the default holds. That datastore's container is `azureml-blobstore-<workspace id>` on the storage
account Azure ML created with the workspace (https://learn.microsoft.com/azure/machine-learning/concept-data,
"Default datastores"): names the app cannot know before the workspace exists, so it asks the workspace.

The entity read: `MLClient.datastores.get(name)` (azure-ai-ml 1.35.2 azure/ai/ml/operations/_datastore_operations.py
`get`; without `include_secrets` no key or SAS is fetched, the app reads with its own identity) answers an
`AzureBlobDatastore` with `account_name`, `container_name`, `endpoint` (the storage suffix, e.g. `core.windows.net`)
and `protocol` (azure/ai/ml/entities/_datastore/azure_storage.py); an unknown name is the REST client's 404,
`azure.core.exceptions.ResourceNotFoundError` (azure/ai/ml/_restclient/arm_ml_service/operations/_operations.py,
DatastoresOperations.get `error_map`). The blob endpoint is `<protocol>://<account>.blob.<endpoint>`, the form the
SDK itself builds (azure/ai/ml/constants/_common.py STORAGE_ACCOUNT_URLS["AzureBlob"] = "https://{}.blob.{}").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.exceptions import ResourceNotFoundError


class Datastores(Protocol):
    """`MLClient.datastores` (azure.ai.ml.operations.DatastoreOperations), as far as this module uses it."""

    def get(self, name: str) -> Any: ...


class DatastoreUnusable(RuntimeError):
    """The named datastore cannot stand for the collector's storage (missing, or not an Azure Blob datastore)."""


@dataclass(frozen=True)
class BlobLocation:
    account_url: str  # https://<account>.blob.<suffix>
    container: str

    def __str__(self) -> str:
        return f"{self.account_url.rstrip('/')}/{self.container}"


def blob_location(datastores: Datastores, name: str) -> BlobLocation:
    """The account URL and container of the blob datastore `name` of the workspace."""
    from azure.ai.ml.entities import AzureBlobDatastore  # azure-ai-ml: only in azure mode, only when asked

    try:
        datastore = datastores.get(name)
    except ResourceNotFoundError:
        raise DatastoreUnusable(f"datastore {name!r} does not exist in the workspace (INFERENCE_DATASTORE)") from None
    if not isinstance(datastore, AzureBlobDatastore):
        kind = getattr(datastore, "type", None) or type(datastore).__name__
        raise DatastoreUnusable(f"datastore {name!r} is of type {getattr(kind, 'value', kind)}, not AzureBlob "
                                "(INFERENCE_DATASTORE: the data collector writes to blob storage)")
    if not (datastore.account_name and datastore.container_name and datastore.endpoint):
        raise DatastoreUnusable(f"datastore {name!r} names no storage account, container or endpoint")
    return BlobLocation(blob_account_url(datastore.account_name, datastore.endpoint, datastore.protocol),
                        datastore.container_name)


def blob_account_url(account_name: str, endpoint: str, protocol: str | None = "https") -> str:
    """A blob datastore's account endpoint from its `accountName`, `endpoint` (storage suffix) and `protocol`."""
    return f"{protocol or 'https'}://{account_name}.blob.{endpoint}"
