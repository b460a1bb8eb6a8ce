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
    """MLClient's operations replaced by doubles that record each call in order. The batch deployment resolves its
    pipeline component as azure-ai-ml's `BatchDeploymentOperations._validate_component` does: `components.get(name,
    version)` (no version: the one registered first under the name, the `default` label), registering it only when
    that get fails (sdk/ml/azure-ai-ml/azure/ai/ml/operations/_batch_deployment_operations.py)."""

    def __init__(self):
        self.calls = []
        self.registered: dict[tuple[str, str], object] = {}  # (name, version) -> component, in registration order
        self.deployed: list[object] = []  # the pipeline component each deployment resolved to
        calls = self.calls
        stored = {}

        def register(component):
            self.registered.setdefault((component.name, component.version), component)
            return self.registered[(component.name, component.version)]

        def get_component(name, version=None):
            if version is None:
                version = next((v for n, v in self.registered if n == name), None)
            if (name, version) not in self.registered:
                raise LookupError(f"component {name}:{version} not found")
            return self.registered[(name, version)]

        def resolve(component):
            try:
                return get_component(component.name, component.version)
            except LookupError:
                return register(component)

        def create_component(component):
            calls.append(("components.create_or_update", component))
            return register(component)

        def endpoint_update(endpoint):
            calls.append(("batch_endpoints.begin_create_or_update", endpoint))
            stored["endpoint"] = endpoint
            return _Poller(endpoint)

        def deployment_update(deployment):
            calls.append(("batch_deployments.begin_create_or_update", deployment))
            self.deployed.append(resolve(deployment.component))
            return _Poller(deployment)

        def endpoint_get(name):
            calls.append(("batch_endpoints.get", name))
            return SimpleNamespace(name=name, defaults=SimpleNamespace(deployment_name=None),
                                   scoring_uri=f"https://{name}.westeurope.inference.ml.azure.com/jobs")

        self.components = SimpleNamespace(create_or_update=create_component, get=get_component)
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


def changed_code():
    """The staged code with the training job changed (a new release of it)."""
    code = azure_publish.stage_code()
    job = code / "shared" / "jobs" / "training" / "job.py"
    job.write_text(job.read_text() + "\n# a change in the training code\n")
    return code


def training_step_version(pipeline_component) -> str:
    (step,) = pipeline_component.jobs.values()
    return step.component.version


def test_a_republish_of_changed_code_deploys_the_new_pipeline_and_training_versions():
    """No --version: each publish versions both components by the content (content_version), so the batch
    deployment resolves the new pipeline, whose step is the new training component — never the version registered
    by the first publish."""
    plan = azure_publish.PublishPlan(endpoint_name="bank-retrain", deployment_name="train", compute="cpu-cluster")
    client = RecordingMLClient()
    first, second = azure_publish.stage_code(), changed_code()
    azure_publish.publish(client, plan, code=first, echo=lambda _line: None)
    azure_publish.publish(client, plan, code=second, echo=lambda _line: None)
    old, new = azure_publish.content_version(first), azure_publish.content_version(second)
    assert old != new
    assert [(c.name, c.version) for c in client.deployed] == [(azure_publish.PIPELINE_NAME, old),
                                                              (azure_publish.PIPELINE_NAME, new)]
    assert [training_step_version(c) for c in client.deployed] == [old, new]
    assert (azure_publish.COMPONENT_NAME, new) in client.registered


def test_an_unchanged_republish_reuses_its_versions():
    plan = azure_publish.PublishPlan(endpoint_name="bank-retrain", deployment_name="train", compute="cpu-cluster")
    client = RecordingMLClient()
    for _ in range(2):
        azure_publish.publish(client, plan, code=azure_publish.stage_code(), echo=lambda _line: None)
    assert client.deployed[0] is client.deployed[1]
    assert len({v for n, v in client.registered if n == azure_publish.COMPONENT_NAME}) == 1


def test_an_unversioned_pipeline_component_would_deploy_the_old_pipeline():
    """Why the version matters: the same fake resolves a pipeline component without a version to the one registered
    before, as Azure ML does."""
    client = RecordingMLClient()
    old = azure_publish.build_pipeline_component(azure_publish.build_component(azure_publish.stage_code(), "1"), "c")
    client.registered[(old.name, old.version)] = old
    fresh = azure_publish.build_pipeline_component(azure_publish.build_component(changed_code(), "2"), "c")
    fresh.version = None
    _, deployment = azure_publish.build_deployment(fresh, PLAN)
    client.batch_deployments.begin_create_or_update(deployment)
    assert client.deployed == [old] and training_step_version(client.deployed[0]) == "1"
