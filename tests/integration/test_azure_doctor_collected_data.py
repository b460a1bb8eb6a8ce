"""`retrain azure doctor`'s `collected data` check: INFERENCE_DATASTORE resolves through ARM Datastores - Get
(a loopback stand-in with the documented path, api-version and body: https://learn.microsoft.com/rest/api/azureml/
datastores/get) to a blob container, and the credential may list `modelDataCollector/` there. The container is a
real Azurite one; a refusal is the storage service's own 403 answer, parsed by the real SDK."""

from __future__ import annotations

import uuid

import pytest
from azure.storage.blob import BlobServiceClient

from shared.settings import Settings
from tests.integration.test_azure_doctor_http import BEARER, ML_API, WS_PATH, ScopedCredential, arm_error
from tools import azure_doctor as doc

SUB, RG, WS = "00000000-1111-2222-3333-444444444444", "retrain-rg", "retrain-ws"
ENDPOINT = "score-doctor"
DATASTORE_PATH = f"{WS_PATH}/datastores/workspaceblobstore"


def settings(**over: str) -> Settings:
    env = {"RETRAIN_MODE": "azure", "STORAGE_ACCOUNT_URL": "https://retrainsa.blob.core.windows.net",
           "PIPELINE_KIND": "published",
           "PIPELINE_ENDPOINT_URL": f"https://westeurope.api.azureml.ms/pipelines/v1.0{WS_PATH}/PipelineRuns/"
                                    "PipelineSubmit/6f1c7d2e",
           "AZURE_SUBSCRIPTION_ID": SUB, "AZURE_RESOURCE_GROUP": RG, "AZUREML_WORKSPACE_NAME": WS,
           "AZUREML_ONLINE_ENDPOINT": ENDPOINT, "INFERENCE_DATASTORE": "workspaceblobstore", **over}
    return Settings.from_env(env)


def datastore_body(container: str, kind: str = "AzureBlob") -> dict:
    """Datastores - Get, the workspace's default blob datastore (account key credentials, never returned)."""
    return {"id": DATASTORE_PATH, "name": "workspaceblobstore",
            "type": "Microsoft.MachineLearningServices/workspaces/datastores",
            "properties": {"datastoreType": kind, "accountName": "stmlabc123", "containerName": container,
                           "endpoint": "core.windows.net", "protocol": "https", "isDefault": True,
                           "credentials": {"credentialsType": "AccountKey"}}}


class Containers:
    """container_factory: records the account URL and container asked for, answers a client of `target`."""

    def __init__(self, target):
        self.target, self.asked = target, []

    def __call__(self, account_url: str, container: str, credential, timeout_s: float):
        self.asked.append((account_url, container))
        return self.target(container)


def doctor(httpserver, containers) -> doc.Doctor:
    return doc.Doctor(credential=ScopedCredential(), arm_url=httpserver.url_for("/").rstrip("/"), timeout_s=5,
                      container_factory=containers)


@pytest.fixture
def workspace_container(azurite):
    name = f"azureml-blobstore-{uuid.uuid4()}"
    blobs = BlobServiceClient.from_connection_string(azurite)
    blobs.create_container(name)
    blobs.get_blob_client(name, f"modelDataCollector/{ENDPOINT}/blue/model_inputs/2026/12/07/07/a.jsonl") \
        .upload_blob(b"{}\n")
    return name, lambda container: blobs.get_container_client(container)


def test_a_listable_blob_datastore_is_ok_and_says_the_endpoint_collected(httpserver, workspace_container):
    name, client = workspace_container
    httpserver.expect_oneshot_request(DATASTORE_PATH, "GET", query_string=ML_API, headers=BEARER) \
        .respond_with_json(datastore_body(name))
    containers = Containers(client)

    check = doc.check_collected_data(settings(), doctor(httpserver, containers))

    httpserver.check_assertions()
    assert check.status == "ok", check
    assert f"container {name}" in check.message and f"{ENDPOINT} has collected data" in check.message
    assert containers.asked == [("https://stmlabc123.blob.core.windows.net", name)]


def test_an_endpoint_with_nothing_collected_yet_is_ok_and_says_so(httpserver, workspace_container):
    name, client = workspace_container
    httpserver.expect_oneshot_request(DATASTORE_PATH, "GET", query_string=ML_API, headers=BEARER) \
        .respond_with_json(datastore_body(name))

    check = doc.check_collected_data(settings(AZUREML_ONLINE_ENDPOINT="other"), doctor(httpserver, Containers(client)))

    assert check.status == "ok" and "nothing collected for other yet" in check.message


def test_an_unknown_or_non_blob_datastore_fails_naming_it(httpserver):
    containers = Containers(lambda c: pytest.fail("no storage call for a datastore that does not resolve"))
    httpserver.expect_oneshot_request(DATASTORE_PATH, "GET", query_string=ML_API, headers=BEARER) \
        .respond_with_json(arm_error("UserError", "DatastoreNotFound"), status=404)
    missing = doc.check_collected_data(settings(), doctor(httpserver, containers))
    assert missing.status == "fail" and "datastore workspaceblobstore not found in workspace" in missing.message
    assert "az ml datastore list" in missing.hint

    httpserver.expect_oneshot_request(DATASTORE_PATH, "GET", query_string=ML_API, headers=BEARER) \
        .respond_with_json(datastore_body("c", kind="AzureFile"))
    files = doc.check_collected_data(settings(), doctor(httpserver, containers))
    assert files.status == "fail" and "is of type AzureFile, not AzureBlob" in files.message


def test_a_credential_without_a_data_role_fails_with_the_role_to_grant(httpserver):
    """The storage service's answer to an identity with no data role: 403 AuthorizationPermissionMismatch."""
    container = "azureml-blobstore-0f3c6a1e"
    httpserver.expect_oneshot_request(DATASTORE_PATH, "GET", query_string=ML_API, headers=BEARER) \
        .respond_with_json(datastore_body(container))
    httpserver.expect_request(f"/stmlabc123/{container}", "GET").respond_with_data(
        '<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>This '
        "request is not authorized to perform this operation using this permission.</Message></Error>",
        status=403, headers={"x-ms-error-code": "AuthorizationPermissionMismatch"}, content_type="application/xml")
    blob_account = httpserver.url_for("/stmlabc123")
    containers = Containers(lambda c: doc.container_client(blob_account, c, None, 5))

    check = doc.check_collected_data(settings(), doctor(httpserver, containers))

    assert check.status == "fail", check
    assert "may not list modelDataCollector/ (403 AuthorizationPermissionMismatch)" in check.message
    assert "'Storage Blob Data Reader'" in check.hint and "stmlabc123" in check.hint


def test_without_the_setting_nothing_is_asked_and_the_hint_names_it(httpserver):
    check = doc.check_collected_data(settings(INFERENCE_DATASTORE=""), doctor(httpserver, Containers(None)))
    assert check.status == "ok" and "INFERENCE_DATASTORE unset" in check.message
    assert "INFERENCE_DATASTORE=workspaceblobstore" in check.hint
    assert not httpserver.log
