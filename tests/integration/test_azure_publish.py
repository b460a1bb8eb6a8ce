"""The Azure ML v2 definitions, built and validated offline with azure-ai-ml, and the publish call order
against an MLClient whose operations are recording doubles (no subscription needed)."""

from __future__ import annotations

import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from azure.ai.ml.entities import (
    BatchEndpoint,
    CommandComponent,
    PipelineComponent,
    PipelineComponentBatchDeployment,
)

from local.processes import PROJECT_ROOT
from shared.domain.pipeline_params import PARAMETERS
from shared.jobs import publish as azure_publish

PLAN = azure_publish.PublishPlan(endpoint_name="bank-retrain", deployment_name="train-v1", compute="cpu-cluster",
                                 version="3")


@pytest.fixture(scope="module")
def component():
    return azure_publish.build_component(azure_publish.stage_code(), PLAN.version)


def test_component_has_an_input_for_every_pipeline_parameter(component):
    assert isinstance(component, CommandComponent)
    expected = {n for n in PARAMETERS if n not in azure_publish.NOT_INPUTS} | {"training_data"}
    assert set(component.inputs) == expected
    assert component.inputs["training_data"].type == "uri_file"
    assert component.inputs["time_budget_s"].type == "integer" and component.inputs["time_budget_s"].default == 60
    assert component.inputs["primary_metric"].default == "AUC_weighted"
    assert component.inputs["exclude_columns"].optional is True
    assert component._validate().passed


def test_component_runs_the_same_training_code_with_every_input(component):
    command = component.command
    assert command.startswith("python -m shared.jobs.training.job ")
    for name in component.inputs:
        assert f"${{{{inputs.{name}}}}}" in command or name == "dataset_name", name
    flags = set(re.findall(r"(--[a-z-]+) \$\{\{", command))
    help_text = subprocess.run([sys.executable, "-m", "shared.jobs.training.job", "--help"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=60).stdout
    missing = [flag for flag in sorted(flags) if flag not in help_text]
    assert missing == [], f"training job lacks flags used by the component: {missing}"


def test_no_free_text_input_reaches_the_command_line(component):
    """Azure ML substitutes `${{inputs.x}}` into the command as text: each input there is a number, an enum, a
    folder/file Azure mounts, or a string whose pipeline_params pattern refuses shell text."""
    from shared.domain.pipeline_params import PATTERNS, ParameterError, validate

    substituted = set(re.findall(r"\$\{\{inputs\.([a-z_]+)\}\}", component.command))
    assert substituted == set(component.inputs) - {"dataset_name"}
    for name in sorted(substituted):
        spec = component.inputs[name]
        if spec.type in ("integer", "number", "uri_file", "uri_folder") or getattr(spec, "enum", None):
            continue
        assert spec.type == "string", name
        assert name in PATTERNS or PARAMETERS[name].kind == "columns", f"{name} reaches the command unchecked"
        for hostile in ("a;id", "$(id)", "`id`", "a b", "a\nb", "${{inputs.seed}}", "a|b", "'"):
            with pytest.raises(ParameterError):
                validate({name: hostile})
    assert component.inputs["reason"].enum == ["upload", "drift", "http", "manual"]


def test_environment_is_pinned_from_requirements_train(component):
    pins = component.environment.conda_file["dependencies"][-1]["pip"]
    lines = [line for line in (PROJECT_ROOT / "requirements-train.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    assert pins == lines and all("==" in pin for pin in pins)


def test_code_upload_is_only_the_shared_package(tmp_path):
    code = azure_publish.stage_code()
    assert sorted(p.name for p in code.iterdir()) == ["shared"]
    module = azure_publish.build_component(code, PLAN.version).command.split()[2]  # python -m <module>
    assert module == "shared.jobs.training.job" and (code / (module.replace(".", "/") + ".py")).exists()
    assert not list(code.rglob("__pycache__"))


def test_pipeline_component_and_batch_deployment_validate_offline(component):
    pipeline = azure_publish.build_pipeline_component(component, PLAN.compute)
    assert isinstance(pipeline, PipelineComponent)
    assert set(pipeline.inputs) == set(component.inputs)
    assert list(pipeline.outputs) == ["model_dir"]
    assert pipeline._validate().passed
    endpoint, deployment = azure_publish.build_deployment(pipeline, PLAN)
    assert isinstance(endpoint, BatchEndpoint) and endpoint.name == "bank-retrain"
    assert isinstance(deployment, PipelineComponentBatchDeployment)
    assert deployment.endpoint_name == "bank-retrain" and deployment.settings["default_compute"] == "cpu-cluster"


class _Poller:
    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


class RecordingMLClient:
    """MLClient's operations replaced by doubles that record each call in order."""

    def __init__(self):
        self.calls = []
        calls = self.calls
        stored = {}

        def create_component(component):
            calls.append(("components.create_or_update", component))
            return component

        def endpoint_update(endpoint):
            calls.append(("batch_endpoints.begin_create_or_update", endpoint))
            stored["endpoint"] = endpoint
            return _Poller(endpoint)

        def deployment_update(deployment):
            calls.append(("batch_deployments.begin_create_or_update", deployment))
            return _Poller(deployment)

        def endpoint_get(name):
            calls.append(("batch_endpoints.get", name))
            return SimpleNamespace(name=name, defaults=SimpleNamespace(deployment_name=None),
                                   scoring_uri=f"https://{name}.westeurope.inference.ml.azure.com/jobs")

        self.components = SimpleNamespace(create_or_update=create_component)
        self.batch_endpoints = SimpleNamespace(begin_create_or_update=endpoint_update, get=endpoint_get)
        self.batch_deployments = SimpleNamespace(begin_create_or_update=deployment_update)


def test_publish_creates_component_endpoint_deployment_then_sets_the_default():
    client = RecordingMLClient()
    lines = []
    url = azure_publish.publish(client, PLAN, echo=lines.append)
    names = [name for name, _ in client.calls]
    assert names == ["components.create_or_update", "batch_endpoints.begin_create_or_update",
                     "batch_deployments.begin_create_or_update", "batch_endpoints.get",
                     "batch_endpoints.begin_create_or_update"]
    assert isinstance(client.calls[0][1], CommandComponent) and client.calls[0][1].version == "3"
    assert isinstance(client.calls[1][1], BatchEndpoint)
    deployment = client.calls[2][1]
    assert isinstance(deployment, PipelineComponentBatchDeployment) and deployment.name == "train-v1"
    assert client.calls[4][1].defaults.deployment_name == "train-v1"
    assert url == "https://bank-retrain.westeurope.inference.ml.azure.com/jobs"
    assert lines[-1].startswith(f"invocation URL: {url}")
