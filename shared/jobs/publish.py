"""`retrain azure publish`: define the training pipeline in Azure ML (v2) and publish it behind a batch endpoint.

The pipeline is one command component that runs the same training code as the local pipeline endpoint
(`python -m shared.jobs.training.job`), in the environment built from the project's pinned training requirements
(`shared.jobs.environment`), with an input for every pipeline parameter. It is wrapped in a pipeline component
and deployed as a `PipelineComponentBatchDeployment`, so it can be invoked over REST at the endpoint's invocation
URL (`PIPELINE_KIND=batch-endpoint`). Building the objects needs no subscription; only `publish` talks to Azure,
through the `MLClient` it is given.

Every publish names a version for both components: a pipeline component without one is resolved by the deployment
to the version already registered under its name, so a re-publish would keep serving the old training step
(see `content_version`).
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.domain.pipeline_params import CHOICES, FOLDER_INPUTS, PARAMETERS
from shared.jobs.environment import environment, stage_code

COMPONENT_NAME = "bankmarketing_train"
PIPELINE_NAME = "bankmarketing_retrain"
# Parameters that are not component inputs: the dataset arrives as the `training_data` file input.
NOT_INPUTS = {"dataset_uri"}


@dataclass(frozen=True)
class PublishPlan:
    endpoint_name: str
    deployment_name: str
    compute: str
    version: str | None = None  # None: `content_version` of the staged code (what `retrain azure publish` does)


def content_version(code: Path) -> str:
    """The components' version when none is given: the first 16 hex digits of a SHA-256 over the staged code (each
    file's relative path and bytes) and the component's definition (command, inputs, outputs, environment image and
    pinned requirements), so changed code or pins get a new version and an unchanged re-publish the same one.

    Why a version on every publish: a `PipelineComponentBatchDeployment` whose pipeline component has no version is
    resolved to the version already registered under that name — azure-ai-ml's
    `BatchDeploymentOperations._validate_component` first calls `components.get(name, version=None)`, which reads
    the `default` label (`ComponentOperations._get`: DEFAULT_LABEL_NAME -> DEFAULT_COMPONENT_VERSION), and creates
    the component only when that get fails
    (github.com/Azure/azure-sdk-for-python, sdk/ml/azure-ai-ml/azure/ai/ml/operations/_batch_deployment_operations.py
    and _component_operations.py). A fixed version (`--version`) is the caller's promise that the code is the same."""
    digest = hashlib.sha256()
    for path in sorted(p for p in code.rglob("*") if p.is_file()):
        digest.update(path.relative_to(code).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    definition = build_component(code, "0")._to_dict()
    for varying in ("code", "version"):  # the staging folder's path changes every time; the version is the result
        definition.pop(varying, None)
    digest.update(json.dumps(definition, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def component_version(plan: PublishPlan, code: Path) -> str:
    """The version the plan names, else the content's (`content_version`)."""
    return plan.version or content_version(code)


def _component_inputs():
    from azure.ai.ml import Input

    inputs: dict[str, Any] = {"training_data": Input(type="uri_file", description="the dataset version (CSV)")}
    for name, p in PARAMETERS.items():
        if name in NOT_INPUTS:
            continue
        if name in FOLDER_INPUTS:
            inputs[name] = Input(type="uri_folder", optional=True, description=p.description)
            continue
        if p.kind == "integer":
            kwargs = {"type": "integer"}
            if p.minimum is not None:
                kwargs["min"] = int(p.minimum)
            if p.maximum is not None:
                kwargs["max"] = int(p.maximum)
        elif p.kind in CHOICES:
            kwargs = {"type": "string", "enum": list(CHOICES[p.kind])}
        else:  # free strings have no pattern in a component input: the service checks them (PATTERNS) first
            kwargs = {"type": "string"}
        if p.default in (None, ""):
            kwargs["optional"] = True
        else:
            kwargs["default"] = p.default
        inputs[name] = Input(description=p.description, **kwargs)
    return inputs


# Inputs that reach the command line as text. Azure ML substitutes `${{inputs.<name>}}` into the command string
# when the job runs ("the expression is evaluated and the value is substituted":
# https://learn.microsoft.com/en-us/azure/machine-learning/concept-expressions), with no quoting, and a
# component's string input has no pattern of its own (azure.ai.ml.Input takes `min`, `max` and `enum`, no pattern;
# https://learn.microsoft.com/en-us/azure/machine-learning/reference-yaml-component-command). So every string
# input here is an enum, a folder/file input (Azure substitutes the mount path it chose) or a string whose
# pipeline_params pattern allows no whitespace, quote, `$`, `;`, `|`, `&`, backtick or `{` — the service
# validates every submission against it (shared.services.retrain), so no caller text becomes code
# (tests/integration/test_azure_publish.py checks every input in the command).


def _command() -> str:
    optional = " ".join(f"$[[--{flag} ${{{{inputs.{name}}}}}]]" for name, flag in (
        ("exclude_columns", "exclude-columns"), ("dataset_version", "dataset-version"),
        ("trigger_id", "trigger-id"), ("reason", "reason"), ("champion_model", "champion-model"),
        ("champion_version", "champion-version"), ("champion_digest", "champion-digest"),
        ("drift_report", "drift-report")))
    return ("python -m shared.jobs.training.job --data ${{inputs.training_data}} --out ${{outputs.model_dir}} "
            "--budget-s ${{inputs.time_budget_s}} --seed ${{inputs.seed}} "
            "--primary-metric ${{inputs.primary_metric}} --experiment ${{inputs.experiment_name}} "
            "--evaluation-percent ${{inputs.evaluation_percent}} --evaluation-rows ${{inputs.evaluation_rows}} "
            + optional)


def build_component(code: Path, version: str):
    from azure.ai.ml import Output, command

    job = command(name=COMPONENT_NAME, display_name="Train the bank-marketing classifier", version=version,
                  description="FLAML-tuned bagged LightGBM, out-of-fold metrics; writes an MLflow model + metrics.json",
                  code=str(code), command=_command(), environment=environment(), inputs=_component_inputs(),
                  outputs={"model_dir": Output(type="uri_folder", description="model/ (MLflow) and metrics.json")})
    return job.component


def build_pipeline_component(component, compute: str):
    """The pipeline around the training component, with the training component's version (see `content_version`:
    without one, the deployment would resolve the version registered before)."""
    from azure.ai.ml import Input, dsl

    @dsl.pipeline(name=PIPELINE_NAME, version=component.version, default_compute=compute,
                  description="Retrain the bank-marketing classifier")
    def retrain_pipeline(training_data: Input(type="uri_file"),
                         time_budget_s: Input(type="integer", min=1) = 60,
                         primary_metric: Input(type="string") = "AUC_weighted",
                         exclude_columns: Input(type="string", optional=True) = None,
                         seed: Input(type="integer", min=0) = 42,
                         experiment_name: Input(type="string") = "bankmarketing-retrain",
                         dataset_version: Input(type="integer", optional=True) = None,
                         dataset_name: Input(type="string") = "bankmarketing",
                         trigger_id: Input(type="string", optional=True) = None,
                         reason: Input(type="string", optional=True, enum=list(CHOICES["reason"])) = None,
                         evaluation_percent: Input(type="integer", min=0, max=50) = 10,
                         evaluation_rows: Input(type="string", enum=list(CHOICES["rows"])) = "auto",
                         champion_model: Input(type="uri_folder", optional=True) = None,
                         champion_version: Input(type="integer", optional=True) = None,
                         champion_digest: Input(type="string", optional=True) = None,
                         drift_report: Input(type="string", optional=True) = None):
        step = component(training_data=training_data, time_budget_s=time_budget_s, primary_metric=primary_metric,
                         exclude_columns=exclude_columns, seed=seed, experiment_name=experiment_name,
                         dataset_version=dataset_version, dataset_name=dataset_name, trigger_id=trigger_id,
                         reason=reason, evaluation_percent=evaluation_percent,
                         evaluation_rows=evaluation_rows, champion_model=champion_model,
                         champion_version=champion_version, champion_digest=champion_digest,
                         drift_report=drift_report)
        return {"model_dir": step.outputs.model_dir}

    return retrain_pipeline._pipeline_builder.build()


def build_deployment(pipeline_component, plan: PublishPlan):
    from azure.ai.ml.entities import BatchEndpoint, PipelineComponentBatchDeployment

    endpoint = BatchEndpoint(name=plan.endpoint_name, description="Retraining pipeline for the bank-marketing model")
    deployment = PipelineComponentBatchDeployment(
        name=plan.deployment_name, endpoint_name=plan.endpoint_name, component=pipeline_component,
        settings={"default_compute": plan.compute, "continue_on_step_failure": False},
        description="bankmarketing_retrain pipeline component")
    return endpoint, deployment


def publish(ml_client, plan: PublishPlan, *, code: Path | None = None, echo=print) -> str:
    """Create/update the component, the batch endpoint and its deployment; return the invocation URL."""
    code = code or stage_code()
    component = build_component(code, component_version(plan, code))
    component = ml_client.components.create_or_update(component)
    echo(f"component {component.name}:{component.version} registered")
    pipeline_component = build_pipeline_component(component, plan.compute)
    endpoint, deployment = build_deployment(pipeline_component, plan)
    echo(f"pipeline component {pipeline_component.name}:{pipeline_component.version}")
    ml_client.batch_endpoints.begin_create_or_update(endpoint).result()
    echo(f"batch endpoint {plan.endpoint_name} ready")
    ml_client.batch_deployments.begin_create_or_update(deployment).result()
    echo(f"deployment {plan.deployment_name} created")
    endpoint = ml_client.batch_endpoints.get(plan.endpoint_name)
    endpoint.defaults.deployment_name = plan.deployment_name
    ml_client.batch_endpoints.begin_create_or_update(endpoint).result()
    url = endpoint.scoring_uri
    echo(f"invocation URL: {url}  (set PIPELINE_KIND=batch-endpoint and PIPELINE_ENDPOINT_URL to it)")
    return url
