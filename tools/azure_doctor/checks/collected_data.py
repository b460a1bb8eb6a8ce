"""The `collected data` check: INFERENCE_DATASTORE resolves to a blob datastore of the workspace, and the credential
may list `modelDataCollector/` in it (what the drift check reads in Azure).

Datastores - Get (ARM, api-version 2024-04-01): `properties.datastoreType` "AzureBlob" with `accountName`,
`containerName`, `endpoint` (storage suffix) and `protocol`
(https://learn.microsoft.com/rest/api/azureml/datastores/get; the same fields azure-ai-ml's AzureBlobDatastore
carries, shared.adapters.workspace_datastore). Listing needs a data role (Storage Blob Data Reader or more) on the
datastore's account or container; Owner/Contributor give none.
"""

from __future__ import annotations

from itertools import islice

from shared.adapters.workspace_datastore import blob_account_url
from shared.domain.collected_data import ROOT
from shared.settings import Settings
from tools.azure_doctor.doctor import (
    ML_API_VERSION,
    Doctor,
    Unreachable,
    arm_error,
    arm_unreachable,
    needs_token,
    unreachable,
    why_unreachable,
)
from tools.azure_doctor.redact import clip
from tools.azure_doctor.resources import workspace_id
from tools.azure_doctor.results import FAIL, OK, Check

NAME = "collected data"
SHOWN_ENDPOINTS = 20


def check_collected_data(settings: Settings, doctor: Doctor) -> Check:
    if (skip := needs_token(NAME, doctor)) is not None:
        return skip
    datastore = settings.inference_datastore
    if not datastore:
        where = settings.inference_account_url or "the app's storage account"
        return Check(NAME, OK, f"INFERENCE_DATASTORE unset: the drift check reads container "
                               f"{settings.inference_container} on {where}",
                     "Azure ML's data collector writes to the workspace's blob datastore: set "
                     "INFERENCE_DATASTORE=workspaceblobstore (infra/ does)")
    try:
        response = doctor.arm(f"{workspace_id(settings)}/datastores/{datastore}", ML_API_VERSION)
    except Unreachable as exc:
        return arm_unreachable(NAME, doctor, exc)
    if response.status_code == 404:
        return Check(NAME, FAIL, f"datastore {datastore} not found in workspace {settings.azureml_workspace_name} "
                                 f"({arm_error(response) or 404})",
                     "set INFERENCE_DATASTORE to the datastore the deployments' data collector writes to "
                     "(workspaceblobstore unless data_collector says otherwise; `az ml datastore list`)")
    if response.status_code != 200:
        return Check(NAME, FAIL, f"datastore {datastore}: {response.status_code} ({arm_error(response)})",
                     "the identity needs to read the workspace (see the workspace roles check)")
    properties = response.json().get("properties") or {}
    kind = properties.get("datastoreType")
    if kind != "AzureBlob":
        return Check(NAME, FAIL, f"datastore {datastore} is of type {kind}, not AzureBlob",
                     "name the blob datastore the data collector writes to (workspaceblobstore by default)")
    account, container = properties.get("accountName") or "?", properties.get("containerName") or "?"
    url = blob_account_url(account, properties.get("endpoint") or "core.windows.net", properties.get("protocol"))
    return _list_collected(settings, doctor, datastore, url, account, container)


def _list_collected(settings: Settings, doctor: Doctor, datastore: str, url: str, account: str,
                    container: str) -> Check:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    hint = (f"assign 'Storage Blob Data Reader' to the app's identity on storage account {account} (or on its "
            f"container {container}); role assignments take up to 30 min to apply")
    where = f"datastore {datastore} (account {account}, container {container})"
    try:
        client = doctor.container_factory(url, container, doctor.credential, doctor.timeout_s)
        folders = [item.name for item in islice(client.walk_blobs(name_starts_with=f"{ROOT}/", delimiter="/"),
                                                SHOWN_ENDPOINTS)]
    except (ServiceRequestError, Unreachable) as exc:
        return unreachable(NAME, doctor, f"storage account {account}", why_unreachable(exc, doctor.timeout_s))
    except ClientAuthenticationError as exc:
        return Check(NAME, FAIL, f"{where} refused the credential ({clip(getattr(exc, 'message', str(exc)), 160)})",
                     hint)
    except HttpResponseError as exc:
        code = getattr(exc, "error_code", None) or ""
        if exc.status_code == 403:
            return Check(NAME, FAIL, f"{where}: may not list {ROOT}/ (403 {code})", hint)
        if exc.status_code == 404:
            return Check(NAME, FAIL, f"{where}: the container does not exist (404 {code})",
                         "check the datastore in the studio (Data > Datastores)")
        return Check(NAME, FAIL, f"{where}: {exc.status_code} {code}", "retry; if it persists see the Azure status")
    endpoints = [f.removeprefix(f"{ROOT}/").rstrip("/") for f in folders]
    collected = (f"{settings.online_endpoint} has collected data" if settings.online_endpoint in endpoints else
                 f"nothing collected for {settings.online_endpoint} yet (data appears after the first scored "
                 "requests of a deployment with the data collector on)")
    return Check(NAME, OK, f"{where}: {ROOT}/ can be listed; {collected}")
