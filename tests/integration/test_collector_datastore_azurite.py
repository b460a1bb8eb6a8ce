"""In Azure the drift check reads what Azure ML's data collector wrote to the workspace's blob datastore
(INFERENCE_DATASTORE=workspaceblobstore), not the app's own `inference-data` container.

bootstrap is built in azure mode with doubles where Azure is unreachable: MLClient.datastores answers the SDK's
AzureBlobDatastore entity for `workspaceblobstore` (account `devstoreaccount1`, container
`azureml-blobstore-<workspace id>`, endpoint suffix `core.windows.net`, protocol http: Azurite speaks no TLS), and
the app identity's credential is Azurite's account key. The resolved URL,
`http://devstoreaccount1.blob.core.windows.net`, is a production-style URL that Azurite serves from its Host header;
the test reaches it through HTTP_PROXY pointing at Azurite, so the client really talks to the account and
container the datastore names. One collector blob in the documented layout and envelope is read back by the drift
check's inference reader."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from azure.ai.ml.entities import AzureBlobDatastore
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient

from shared.domain import schema
from shared.settings import Settings
from tests.unit.test_collected_data import DOCUMENTED_LINE
from tests.unit.test_workspace_datastore import RecordingDatastores

ENDPOINT = "score-collector"
WORKSPACE_ID = "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"


def collector_line(at: float, rows: list[dict]) -> str:
    """The documented `model_inputs` envelope with this test's time and rows."""
    line = json.loads(DOCUMENTED_LINE)
    data = json.dumps(rows, separators=(",", ":"))
    line.update(time=datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), data=rows,
                type="azureml.inference.model_inputs", contentrange=f"bytes 0-{len(data) - 1}/{len(data)}")
    return json.dumps(line, separators=(",", ":"))


@pytest.fixture
def workspace_blob_store(azurite):
    """A container standing for the workspace's `azureml-blobstore-<id>`, holding one collector blob of 3 rows."""
    container = f"azureml-blobstore-{uuid.uuid4()}"
    blobs = BlobServiceClient.from_connection_string(azurite)
    blobs.create_container(container)
    at = time.time() - 60
    rows = [{**schema.EXAMPLE_RECORD, "age": age} for age in (31, 47, 62)]
    name = (f"modelDataCollector/{ENDPOINT}/blue/model_inputs/"
            f"{datetime.fromtimestamp(at, UTC):%Y/%m/%d/%H}/{uuid.uuid4()}.jsonl")
    blobs.get_blob_client(container, name).upload_blob((collector_line(at, rows) + "\n").encode())
    return container, at


def test_azure_mode_reads_collected_data_from_the_resolved_datastore(azurite, workspace_blob_store, monkeypatch):
    import shared.bootstrap as bootstrap

    container, at = workspace_blob_store
    key = re.search(r"AccountKey=([^;]+)", azurite).group(1)
    blob_endpoint = re.search(r"BlobEndpoint=(http://[^;/]+)", azurite).group(1)
    datastores = RecordingDatastores(AzureBlobDatastore(
        name="workspaceblobstore", account_name="devstoreaccount1", container_name=container,
        endpoint="core.windows.net", protocol="http"))

    workspace = SimpleNamespace(datastores=datastores)  # MLClient, as far as the collector wiring uses it
    monkeypatch.setattr(bootstrap, "workspace_client", lambda settings: workspace)
    monkeypatch.setattr(bootstrap, "azure_credential", lambda: AzureNamedKeyCredential("devstoreaccount1", key))
    monkeypatch.setenv("HTTP_PROXY", blob_endpoint)  # only the production-style host goes through it
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    settings = Settings.from_env({
        "RETRAIN_MODE": "azure", "AzureWebJobsStorage": azurite, "PIPELINE_KIND": "batch-endpoint",
        "PIPELINE_ENDPOINT_URL": "https://train.westeurope.inference.ml.azure.com/jobs",
        "AZURE_SUBSCRIPTION_ID": "s", "AZURE_RESOURCE_GROUP": "r", "AZUREML_WORKSPACE_NAME": "w",
        "AZUREML_WORKSPACE_ID": WORKSPACE_ID, "AZUREML_ONLINE_ENDPOINT": ENDPOINT,
        "INFERENCE_DATASTORE": "workspaceblobstore"})

    services = bootstrap.build(settings)
    assert datastores.calls == []  # nothing asked of the workspace while building (every trigger builds)

    window = services.drift.inference(at - 3600, time.time() + 1)
    assert sorted(window["age"]) == [31, 47, 62] and list(window.columns) == list(schema.FEATURES)
    assert len(services.drift.inference(at - 3600, time.time() + 1)) == 3
    assert datastores.calls == [("workspaceblobstore", {})]  # looked up once, no secrets asked for
    # The app's own `inference-data` container, which Azure ML never writes to, is not what was read.
    own = BlobServiceClient.from_connection_string(azurite).get_container_client(settings.inference_container)
    assert not list(own.list_blobs(name_starts_with=f"modelDataCollector/{ENDPOINT}/"))
