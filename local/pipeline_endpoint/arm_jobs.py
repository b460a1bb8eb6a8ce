"""Local stand-in of the workspace's ARM jobs API (Jobs - Get, Jobs - List), for the runs of both kinds.

GET {arm}/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}/jobs/
{name}?api-version=... and .../jobs?api-version=... (paths as azure-ai-ml's generated client builds them:
azure/ai/ml/_restclient/arm_ml_service/operations/_operations.py, build_jobs_get_request / build_jobs_list_request).
The answer is a JobBase (same file's models/_models.py: JobBase = id, name, type, systemData, properties;
PipelineJob properties: jobType "Pipeline", status (JobStatus, models/_enums.py), experimentName, displayName, tags,
properties, inputs (LiteralJobInput / UriFileJobInput / UriFolderJobInput: jobInputType "literal" / "uri_file" /
"uri_folder"), outputs (UriFolderJobOutput: jobOutputType "uri_folder", uri)); the list a page
{"value": [...], "nextLink": null}. ARM needs `api-version` on every request ("Azure REST API reference": the
api-version query parameter is required, https://learn.microsoft.com/rest/api/azure/; ARM's code for it:
MissingApiVersionParameter). Unconfirmed:
which api-versions the RP accepts (any YYYY-MM-DD[-preview] is taken here), and the exact 404 code and message for an
unknown job (UserError assumed, as Azure ML's data plane answers)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from local.pipeline_endpoint.auth import ARM_AUDIENCE, error, refusal
from local.pipeline_endpoint.runs import LocalRun, RunKind
from local.pipeline_endpoint.worker import EndpointConfig, RunWorker
from local.pipeline_endpoint.workspace import workspace_topic
from shared.domain.pipeline_params import FOLDER_INPUTS

WORKSPACE = ("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/"
             "workspaces/{ws}")
JOB_TYPE = "Microsoft.MachineLearningServices/workspaces/jobs"
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


def job_output_folder(name: str) -> str:
    """Where a pipeline job's `model_dir` output goes by default: the workspace blob store under azureml/<job>/."""
    return f"azureml://datastores/workspaceblobstore/paths/azureml/{name}/model_dir/"


def job_inputs(run: LocalRun) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for name, value in run.parameters.items():
        inputs[name] = ({"jobInputType": "uri_folder", "uri": value} if name in FOLDER_INPUTS
                        else {"jobInputType": "literal", "value": value})
    for name, ref in run.data_paths.items():
        inputs[name] = {"jobInputType": "uri_file",
                        "uri": f"azureml://datastores/{ref['DataStoreName']}/paths/{ref['RelativePath']}"}
    return inputs


def job_resource(run: LocalRun) -> dict[str, Any]:
    """The JobBase of a run."""
    return {
        "id": f"{run.topic}/jobs/{run.run_id}", "name": run.run_id, "type": JOB_TYPE,
        "systemData": {"createdAt": run.created, "createdBy": "local", "createdByType": "User",
                       "lastModifiedAt": run.ended or run.started or run.created},
        "properties": {
            "jobType": "Pipeline", "status": str(run.status), "experimentName": run.experiment,
            "displayName": run.run_id, "description": None, "tags": {}, "isArchived": False,
            "properties": {"azureml.runsource": "azureml.PipelineRun",
                           **({"azureml.batchrun": "true"} if run.kind == RunKind.BATCH else {})},
            "inputs": job_inputs(run),
            "outputs": {"model_dir": {"jobOutputType": "uri_folder", "uri": job_output_folder(run.run_id)}},
            "settings": {}, "jobs": {}, "sourceJobId": None, "computeId": None}}


def arm_router(config: EndpointConfig, worker: RunWorker) -> APIRouter:
    router = APIRouter()

    def refused_or_bad(request: Request) -> JSONResponse | None:
        if (refused := refusal(request, config.token, ARM_AUDIENCE)) is not None:
            return refused
        version = request.query_params.get("api-version")
        if not version:
            return error(400, "MissingApiVersionParameter",
                         "The api-version query parameter (?api-version=) is required for all requests.")
        if not _API_VERSION.fullmatch(version):
            return error(400, "InvalidApiVersionParameter",
                         f"The api-version '{version[:40]}' is invalid. The supported versions are dated "
                         "(yyyy-mm-dd or yyyy-mm-dd-preview).")
        return None

    def in_workspace(sub: str, rg: str, ws: str) -> list[LocalRun]:
        topic = workspace_topic(sub, rg, ws).lower()  # ARM ids compare case-insensitively
        return [run for run in list(worker.runs.values()) if run.topic.lower() == topic]

    @router.get(WORKSPACE + "/jobs/{name}")
    async def get_job(sub: str, rg: str, ws: str, name: str, request: Request):
        if (refused := refused_or_bad(request)) is not None:
            return refused
        run = next((r for r in in_workspace(sub, rg, ws) if r.run_id == name), None)
        if run is None:
            return error(404, "UserError", f"Could not find job with name '{name[:260]}' in the workspace.")
        return JSONResponse(job_resource(run))

    @router.get(WORKSPACE + "/jobs")
    async def list_jobs(sub: str, rg: str, ws: str, request: Request):
        if (refused := refused_or_bad(request)) is not None:
            return refused
        runs = sorted(in_workspace(sub, rg, ws), key=lambda r: r.created, reverse=True)
        return JSONResponse({"value": [job_resource(r) for r in runs], "nextLink": None})

    return router
