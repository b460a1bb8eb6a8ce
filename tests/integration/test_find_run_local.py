"""The product's lookup against the local pipeline endpoint (local/pipeline_endpoint, which does not deduplicate):
the same find_run / job-name / 409 path the dispatcher relies on in Azure runs against the emulator, v2 and v1."""

from __future__ import annotations

import uuid

import pytest
from azure.storage.blob import BlobServiceClient

from local.pipeline_endpoint import invocation_url, local_workspace_id, submit_url
from local.processes import python_argv, start_on_free_ports
from shared.adapters import storage
from shared.adapters.credentials import StaticTokenCredential
from shared.adapters.pipeline_client import BatchEndpointPipelineClient, PublishedPipelineClient, job_name

SECRET = "local-pipeline-secret"


@pytest.fixture(scope="module")
def endpoint(azurite, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline-lookup")
    blobs = BlobServiceClient.from_connection_string(azurite)
    container = f"ds{uuid.uuid4().hex[:8]}"
    storage.ensure_container(blobs, container)
    # a file the training step refuses at once: these tests look runs up, they need none to train
    blobs.get_blob_client(container, "bank/v1/data.csv").upload_blob(b"age,job\n1,admin.\n")
    child, (port,) = start_on_free_ports(
        "pipeline", 1, lambda ports: python_argv("local.pipeline_endpoint", "--port", str(ports[0]), "--runs-dir",
                                                 str(root / "runs")),
        log_dir=root, env={"LOCAL_PIPELINE_TOKEN": SECRET, "AzureWebJobsStorage": azurite,
                           "LOCAL_DATASTORES": f"workspaceblobstore={container}"})
    yield f"http://127.0.0.1:{port}"
    child.stop()


DATA = {"training_data": {"DataStoreName": "workspaceblobstore", "RelativePath": "bank/v1/data.csv"}}


def test_v2_lookup_submit_and_repeat_against_the_local_endpoint(endpoint):
    client = BatchEndpointPipelineClient(invocation_url(endpoint), StaticTokenCredential(SECRET),
                                         workspace_id=local_workspace_id(), arm_url=endpoint, max_retries=0)
    trigger = f"blob-{uuid.uuid4().hex[:8]}"
    assert client.find_run(trigger) is None
    params = {"trigger_id": trigger, "dataset_version": 1, "reason": "upload", "time_budget_s": 5}
    first = client.submit(experiment="exp", parameters=params, data_paths=DATA)
    assert first.run_id == job_name(trigger)
    again = client.submit(experiment="exp", parameters=params, data_paths=DATA)  # 409 from the endpoint: adopted
    assert again.run_id == first.run_id
    found = client.find_run(trigger)
    assert found is not None and found.run_id == first.run_id
    assert client.find_run(f"blob-{uuid.uuid4().hex[:8]}") is None


def test_v1_lookup_finds_the_run_carrying_the_trigger_id(endpoint):
    client = PublishedPipelineClient(submit_url(endpoint), StaticTokenCredential(SECRET), max_retries=0)
    trigger = f"blob-{uuid.uuid4().hex[:8]}"
    assert client.find_run(trigger) is None
    run = client.submit(experiment="exp", parameters={"trigger_id": trigger, "dataset_version": 1},
                        data_paths=DATA)
    found = client.find_run(trigger)
    assert found is not None and found.run_id == run.run_id
