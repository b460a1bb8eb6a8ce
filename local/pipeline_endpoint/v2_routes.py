"""v2: the batch endpoint's invocation host, `POST {invocation URL}` (locally `/jobs`), for a pipeline component
deployment.

Documented body ("Create jobs and input data for batch endpoints",
https://learn.microsoft.com/azure/machine-learning/how-to-access-data-batch-endpoints-jobs, REST tab):
`{"properties": {"InputData": {name: {"JobInputType": "Literal", "Value": v} | {"JobInputType": "UriFile",
"Uri": "azureml://datastores/<ds>/paths/<path>"} | {"JobInputType": "UriFolder", "Uri": ...}}}}`; azure-ai-ml sends
the same in camelCase (azure/ai/ml/_schema/_deployment/batch/batch_job.py BatchJobSchema), plus `name` (invoke
job_name) and `properties.experimentName` (invoke experiment_name), with `azureml-model-deployment: <deployment>`
when a deployment is named (operations/_batch_endpoint_operations.py invoke). Keys are matched case-insensitively
(both spellings reach the service). The answer is the batch job: id, name, type, properties.status
(azure/ai/ml/entities/_deployment/batch_job.py BatchJob._from_rest_object reads exactly those).

Strict where Azure is (a pipeline component deployment takes only the inputs its component declares, each with its
type: shared.jobs.publish builds them from shared.domain.pipeline_params plus the `training_data` uri_file); job
names are unique in a workspace (409). No deduplication: the same body without a name, sent twice, starts two jobs
(azure-ai-ml sends a fresh `repeatability_request-id` header on each invoke; no document says the service
deduplicates on it, so it is ignored here). Unconfirmed in Microsoft's docs, chosen strictly: the status and body
for an unknown input, for an unknown deployment header (404), and the generated name of an unnamed job
(`batchjob-<uuid>`)."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from local.pipeline_endpoint.arm_jobs import job_resource
from local.pipeline_endpoint.auth import ML_AUDIENCE, error, refusal
from local.pipeline_endpoint.runs import LocalRun, RunKind
from local.pipeline_endpoint.worker import EndpointConfig, RunWorker
from shared.domain import pipeline_params
from shared.jobs.publish import NOT_INPUTS

log = logging.getLogger("pipeline-endpoint")

JOB_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$")  # ARM job names
_DATASTORE_URI = re.compile(r"^azureml://datastores/(?P<ds>[^/]+)/paths/(?P<path>.+)$")
LITERAL, URI_FILE, URI_FOLDER = "literal", "urifile", "urifolder"
_SPELLED = {LITERAL: "Literal", URI_FILE: "UriFile", URI_FOLDER: "UriFolder"}


class BadInvoke(ValueError):
    """A body the endpoint refuses with 400 UserError."""


def _get(mapping: Any, key: str) -> Any:
    """`mapping[key]` matched case-insensitively (None when absent or `mapping` is not an object)."""
    if not isinstance(mapping, dict):
        return None
    return next((v for k, v in mapping.items() if isinstance(k, str) and k.lower() == key.lower()), None)


def component_inputs(config: EndpointConfig) -> set[str]:
    """The pipeline component's inputs, as `retrain azure publish` declares them."""
    return {name for name in pipeline_params.PARAMETERS if name not in NOT_INPUTS} | set(config.data_inputs)


def parse_invoke(body: Any, config: EndpointConfig) -> tuple[str | None, str, dict[str, str], dict[str, dict]]:
    """(name or None, experiment, literal/folder parameters, data paths) of a valid body, else BadInvoke."""
    properties = _get(body, "properties")
    if not isinstance(properties, dict):
        raise BadInvoke("The request body must be a batch job: {\"properties\": {\"InputData\": {...}}}.")
    inputs = _get(properties, "InputData")
    if not isinstance(inputs, dict) or not inputs:
        raise BadInvoke("properties.InputData is required: the pipeline component's inputs.")
    unknown = sorted(set(inputs) - component_inputs(config))
    if unknown:
        raise BadInvoke(f"Input(s) {', '.join(pipeline_params.clip(n) for n in unknown)} are not defined by the "
                        "pipeline component of this deployment.")
    missing = [name for name in config.data_inputs if name not in inputs]
    if missing:
        raise BadInvoke(f"Required input(s) {', '.join(missing)} missing.")
    parameters: dict[str, str] = {}
    data_paths: dict[str, dict[str, str]] = {}
    for name, value in inputs.items():
        kind = str(_get(value, "JobInputType") or "").lower()
        wanted = URI_FILE if name in config.data_inputs else URI_FOLDER if name in pipeline_params.FOLDER_INPUTS \
            else LITERAL
        if kind != wanted:
            raise BadInvoke(f"Input '{name}' must have JobInputType {_SPELLED[wanted]}.")
        if kind == URI_FILE:
            match = _DATASTORE_URI.match(str(_get(value, "Uri") or ""))
            if not match or match["ds"] not in config.datastores or not match["path"].strip("/"):
                raise BadInvoke(f"Input '{name}' must be azureml://datastores/<datastore>/paths/<path> with a "
                                f"datastore of this workspace ({', '.join(sorted(config.datastores))}).")
            data_paths[name] = {"DataStoreName": match["ds"], "RelativePath": match["path"]}
            continue
        raw = _get(value, "Uri" if kind == URI_FOLDER else "Value")
        if raw is None:
            raise BadInvoke(f"Input '{name}' has no {'Uri' if kind == URI_FOLDER else 'Value'}.")
        parameters[name] = raw if isinstance(raw, str) else str(raw).lower() if isinstance(raw, bool) else str(raw)
    try:
        pipeline_params.validate(parameters)
    except pipeline_params.ParameterError as exc:
        raise BadInvoke(str(exc)) from None
    name = _get(properties, "name")
    if name is not None and (not isinstance(name, str) or not JOB_NAME.fullmatch(name)):
        raise BadInvoke(f"Job name {pipeline_params.shown(name)} is invalid: it must match "
                        f"{JOB_NAME.pattern}.")
    experiment = _get(_get(properties, "properties"), "experimentName") or config.endpoint_name
    try:
        experiment = pipeline_params.PARAMETERS["experiment_name"].parse(experiment)
    except pipeline_params.ParameterError as exc:
        raise BadInvoke(f"experimentName: {exc.message}") from None
    return name, experiment, parameters, data_paths


def v2_router(config: EndpointConfig, worker: RunWorker, workspace_id: str) -> APIRouter:
    router = APIRouter()

    @router.post("/jobs")
    async def invoke(request: Request):
        if (refused := refusal(request, config.token, ML_AUDIENCE)) is not None:
            return refused
        deployment = request.headers.get("azureml-model-deployment")
        if deployment is not None and deployment not in config.deployments:
            return error(404, "UserError", f"Deployment '{deployment[:100]}' was not found in batch endpoint "
                                           f"'{config.endpoint_name}'.")
        try:
            body = await request.json()
        except ValueError:
            return error(400, "UserError", "Request body is not valid JSON.")
        try:
            name, experiment, parameters, data_paths = parse_invoke(body, config)
        except BadInvoke as exc:
            return error(400, "UserError", str(exc))
        run = LocalRun(run_id=name or f"batchjob-{uuid.uuid4()}", pipeline_id=deployment or config.deployments[0],
                       experiment=experiment, parameters=parameters, data_paths=data_paths, topic=workspace_id,
                       kind=RunKind.BATCH)
        accepted = job_resource(run)  # as submitted: the worker may start it before this answer is sent
        if not worker.add(run):
            return error(409, "UserError", f"A job with name '{run.run_id}' already exists in the workspace. Job "
                                           "names must be unique.")
        log.info("job %s queued for experiment %s", run.run_id, run.experiment)
        return JSONResponse(accepted)

    return router
