"""Azure ML contracts, each sent in its documented shape and asserted against our code (and the local stand-in where
one serves the contract):

- the batch endpoint invoke body, compared with the one azure-ai-ml's `BatchEndpointOperations.invoke` builds
  (github.com/Azure/azure-sdk-for-python, sdk/ml/azure-ai-ml/azure/ai/ml/operations/_batch_endpoint_operations.py);
- the run events, as the documented samples of "Azure Machine Learning as an Event Grid source"
  (https://learn.microsoft.com/azure/event-grid/event-schema-machine-learning), through the parser and the local
  pipeline endpoint's own events;
- a job's model path, in the documented `azureml://jobs/<job>/outputs/<output>/paths/<path>` form
  (https://learn.microsoft.com/azure/machine-learning/how-to-manage-models), as azure-ai-ml parses it;
- the published pipeline component's version, which the batch deployment resolves.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from local.pipeline_endpoint import EndpointConfig, LocalRun, RunWorker
from shared.adapters.job_outputs import job_output_uri
from shared.adapters.pipeline_client import BatchEndpointPipelineClient
from shared.domain.run_events import RunEnd, confirmation_problem, parse_run_event
from shared.jobs import publish
from tests.parity.run_event_samples import RUN_COMPLETED, RUN_STATUS_CHANGED, WORKSPACE


def parsed(event: dict):
    return parse_run_event(event_id=event["id"], event_type=event["eventType"], subject=event["subject"],
                           data=event["data"])


# ------------------------------------------------------------------------------------------------- run events


def test_the_documented_run_completed_sample_completes_its_run():
    event = parsed(RUN_COMPLETED)
    assert (event.run_id, event.experiment, event.outcome) == (
        "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5", "automl-local-regression", RunEnd.COMPLETED)


def test_the_documented_run_status_changed_sample_says_failed_in_lowercase_and_fails_its_run():
    event = parsed(RUN_STATUS_CHANGED)
    assert (event.status, event.outcome) == ("failed", RunEnd.FAILED)
    # the run GET spells it "Failed" (v1 RunStatus, v2 properties.status): the claim is confirmed all the same
    assert confirmation_problem(event.status, "Failed") is None
    assert confirmation_problem(event.status, "Completed") is not None


@pytest.mark.parametrize("status", ["failed", "Failed", "FAILED", "canceled", "Canceled"])
def test_run_status_is_compared_case_insensitively(status):
    event = copy.deepcopy(RUN_STATUS_CHANGED)
    event["data"]["runStatus"] = status
    assert parsed(event).outcome == RunEnd.FAILED


def test_the_local_pipeline_endpoint_sends_the_documented_event_shapes(tmp_path: Path):
    """The stand-in's events have every top-level field and data field of the documented samples, a RunCompleted
    without runStatus and a RunStatusChanged whose runStatus is spelled like the sample's."""
    worker = RunWorker(EndpointConfig(token="t", runs_dir=tmp_path / "runs", storage_connection="", eventgrid_url=None))
    for status, sample in (("Completed", RUN_COMPLETED), ("Failed", RUN_STATUS_CHANGED)):
        run = LocalRun(run_id="r-1", pipeline_id="p", experiment="bank", parameters={"trigger_id": "t-1"},
                       data_paths={}, topic=WORKSPACE, status=status, ended="2026-01-01T00:00:00Z")
        event = worker.event_for(run)
        assert set(event) == set(sample)
        assert set(event["data"]) == set(sample["data"])
        assert event["eventType"] == sample["eventType"] and event["topic"] == WORKSPACE
        assert re.fullmatch(r"experiments/[^/]+/runs/r-1", event["subject"])
        assert parsed(event).outcome == parsed(sample).outcome
    assert event["data"]["runStatus"] == "failed"


# ------------------------------------------------------------------------------------------------- batch invoke


def _camel(value):
    """azure-ai-ml writes the wire body in camelCase (`inputData`, `jobInputType`); the documented REST examples in
    PascalCase (`InputData`, `JobInputType`). Compared with the first letter lowered, keys only."""
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:]): _camel(v) for k, v in value.items()}
    return value


def sdk_invoke_body(inputs: dict, experiment_name: str) -> dict:
    """The body `BatchEndpointOperations.invoke(endpoint, inputs=…, experiment_name=…)` posts, built with the SDK's
    own schema exactly as invoke builds it (params_override: BATCH_JOB_INPUT_DATA, then BATCH_JOB_PROPERTIES with
    `experimentName`), without a workspace to call."""
    from azure.ai.ml._schema._deployment.batch.batch_job import BatchJobSchema
    from azure.ai.ml.constants._common import BASE_PATH_CONTEXT_KEY, PARAMS_OVERRIDE_KEY
    from azure.ai.ml.constants._endpoint import EndpointYamlFields

    overrides = [{EndpointYamlFields.BATCH_JOB_INPUT_DATA: inputs},
                 {EndpointYamlFields.BATCH_JOB_PROPERTIES: {"experimentName": experiment_name}}]
    job = BatchJobSchema(context={BASE_PATH_CONTEXT_KEY: Path("."), PARAMS_OVERRIDE_KEY: overrides}).load(data={})
    return {"properties": job}


def test_the_batch_invoke_body_is_the_one_azure_ai_ml_sends():
    from azure.ai.ml import Input

    ours = BatchEndpointPipelineClient.body(
        experiment="bankmarketing-retrain", parameters={"dataset_version": 4, "seed": 42},
        data_paths={"training_data": {"DataStoreName": "workspaceblobstore",
                                      "RelativePath": "bankmarketing/v4/data.csv"}})
    sdk = sdk_invoke_body({
        "experiment_name": Input(type="string", default="bankmarketing-retrain"),
        "dataset_version": Input(type="integer", default=4), "seed": Input(type="integer", default=42),
        "training_data": Input(type="uri_file",
                               path="azureml://datastores/workspaceblobstore/paths/bankmarketing/v4/data.csv")},
        "bankmarketing-retrain")
    assert _camel(ours) == _camel(sdk)
    assert ours["properties"]["properties"] == {"experimentName": "bankmarketing-retrain"}


# ------------------------------------------------------------------------------------------------- job outputs


def test_the_model_path_is_the_documented_job_output_uri():
    from azure.ai.ml.constants._common import JOB_URI_FORMAT, JOB_URI_REGEX_FORMAT

    uri = job_output_uri("calm_apple_7x2", "model_dir", "model")
    assert uri == "azureml://jobs/calm_apple_7x2/outputs/model_dir/paths/model"
    assert uri == JOB_URI_FORMAT.format("calm_apple_7x2", "model_dir", "model")
    assert re.fullmatch(JOB_URI_REGEX_FORMAT, uri).groups() == ("calm_apple_7x2", "model_dir", "model")


# ------------------------------------------------------------------------------------------------- publish


def test_the_deployed_pipeline_component_and_its_step_carry_the_content_version():
    """A versioned pipeline component is what the batch deployment's `components.get(name, version)` finds; without
    a version it would resolve the default (previously registered) one (shared.jobs.publish.content_version)."""
    code = publish.stage_code()
    version = publish.component_version(publish.PublishPlan("e", "d", "c"), code)
    assert version == publish.content_version(code) and re.fullmatch(r"[0-9a-f]{16}", version)
    pipeline = publish.build_pipeline_component(publish.build_component(code, version), "cpu-cluster")
    _, deployment = publish.build_deployment(pipeline, publish.PublishPlan("e", "d", "cpu-cluster"))
    assert (deployment.component.name, deployment.component.version) == (publish.PIPELINE_NAME, version)
    (step,) = deployment.component.jobs.values()
    assert (step.component.name, step.component.version) == (publish.COMPONENT_NAME, version)
    assert publish.component_version(publish.PublishPlan("e", "d", "c", version="7"), code) == "7"


# ------------------------------------------------------------------------------------------------- local v2 stand-in


def test_the_local_invoke_accepts_the_body_azure_ai_ml_sends():
    """What `BatchEndpointOperations.invoke(inputs=…, experiment_name=…, job_name=…)` posts (camelCase keys) is read by
    the local invocation host like the documented PascalCase body."""
    from azure.ai.ml import Input

    from local.pipeline_endpoint.v2_routes import parse_invoke

    body = sdk_invoke_body({
        "experiment_name": Input(type="string", default="bank"), "time_budget_s": Input(type="integer", default=3),
        "training_data": Input(type="uri_file", path="azureml://datastores/workspaceblobstore/paths/bank/v4/data.csv")},
        "bank")
    body["properties"]["name"] = "retrain-t-1"  # invoke(job_name=…): BATCH_JOB_NAME
    config = EndpointConfig(token="t", runs_dir=Path("unused"), storage_connection="", eventgrid_url=None)
    name, experiment, parameters, data_paths = parse_invoke(body, config)
    assert (name, experiment) == ("retrain-t-1", "bank")
    assert parameters == {"experiment_name": "bank", "time_budget_s": "3"}
    assert data_paths == {"training_data": {"DataStoreName": "workspaceblobstore", "RelativePath": "bank/v4/data.csv"}}


def test_the_local_arm_job_is_a_pipeline_job_to_azure_ai_ml():
    """The local Jobs - Get answer, read by azure-ai-ml's own ARM models (arm_ml_service JobBase -> PipelineJob,
    UriFileJobInput, UriFolderJobOutput) and its entity loader (`Job._from_rest_object`, what `ml_client.jobs.get`
    returns)."""
    from azure.ai.ml._restclient.arm_ml_service.models import JobBase
    from azure.ai.ml.entities import Job, PipelineJob

    from local.pipeline_endpoint import RunKind
    from local.pipeline_endpoint.arm_jobs import job_resource

    run = LocalRun(run_id="retrain-t-1", pipeline_id="train", experiment="bank", parameters={"time_budget_s": "3"},
                   data_paths={"training_data": {"DataStoreName": "workspaceblobstore", "RelativePath": "b/d.csv"}},
                   topic=WORKSPACE, status="Completed", kind=RunKind.BATCH)
    rest = JobBase(job_resource(run))
    assert rest.properties.job_type == "Pipeline" and rest.properties.status == "Completed"
    assert rest.properties.outputs["model_dir"].uri == \
        "azureml://datastores/workspaceblobstore/paths/azureml/retrain-t-1/model_dir/"
    assert rest.properties.inputs["training_data"].uri == "azureml://datastores/workspaceblobstore/paths/b/d.csv"
    job = Job._from_rest_object(rest)
    assert isinstance(job, PipelineJob) and (job.name, job.status, job.experiment_name) == (
        "retrain-t-1", "Completed", "bank")
