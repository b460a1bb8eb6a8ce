"""v1 (retired: Azure ML SDK v1 support ended 30 June 2026): a published pipeline's REST routes.

POST .../PipelineRuns/PipelineSubmit/{pipelineId} ("Run a published pipeline using REST": ExperimentName,
ParameterAssignments, DataPathAssignments) queues a run and answers it; GET .../PipelineRuns/{runId} returns it.
No deduplication: the same body sent twice starts two runs, as PipelineSubmit offers no idempotency key."""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from local.pipeline_endpoint.auth import error, refusal
from local.pipeline_endpoint.runs import LocalRun, RunKind
from local.pipeline_endpoint.worker import EndpointConfig, RunWorker
from local.pipeline_endpoint.workspace import workspace_topic
from shared.domain import pipeline_params

log = logging.getLogger("pipeline-endpoint")

PREFIX = ("/pipelines/v1.0/subscriptions/{sub}/resourceGroups/{rg}/providers/"
          "Microsoft.MachineLearningServices/workspaces/{ws}/PipelineRuns")


def v1_router(config: EndpointConfig, worker: RunWorker) -> APIRouter:
    router = APIRouter()

    def published(run_id: str) -> LocalRun | None:
        run = worker.runs.get(run_id)
        return run if run is not None and run.kind == RunKind.PUBLISHED else None

    @router.post(PREFIX + "/PipelineSubmit/{pipeline_id}")
    async def submit(sub: str, rg: str, ws: str, pipeline_id: str, request: Request):
        if (refused := refusal(request, config.token, config.v1_scope)) is not None:
            return refused
        if pipeline_id != config.pipeline_id:
            return error(404, "NotFound", f"Published pipeline {pipeline_id} was not found.")
        try:
            body = await request.json()
        except ValueError:
            return error(400, "UserError", "Request body is not valid JSON.")
        if not isinstance(body, dict) or not body.get("ExperimentName"):
            return error(400, "UserError", "ExperimentName is required.")
        params = body.get("ParameterAssignments") or {}
        try:
            pipeline_params.validate(params)
        except pipeline_params.ParameterError as exc:
            return error(400, "UserError", str(exc))
        data_paths = body.get("DataPathAssignments") or {}
        if not isinstance(data_paths, dict) or len(data_paths) != 1:
            return error(400, "UserError", "Exactly one DataPathAssignments entry (the training data) is "
                                           "required, with DataStoreName and RelativePath.")
        (ref,) = data_paths.values()
        if not isinstance(ref, dict) or ref.get("DataStoreName") not in config.datastores or \
                not str(ref.get("RelativePath", "")).strip("/"):
            return error(400, "UserError", f"DataPathAssignments must name a datastore in {sorted(config.datastores)} "
                                           "and a RelativePath inside it.")
        run = LocalRun(run_id=str(uuid.uuid4()), pipeline_id=pipeline_id, experiment=str(body["ExperimentName"]),
                       parameters={str(k): str(v) for k, v in params.items()}, data_paths=data_paths,
                       topic=workspace_topic(sub, rg, ws), kind=RunKind.PUBLISHED)
        accepted = run.to_json()  # as submitted: the worker may start it before this answer is sent
        worker.submit(run)
        log.info("run %s queued for experiment %s", run.run_id, run.experiment)
        return JSONResponse(accepted)

    @router.get(PREFIX + "/{run_id}")
    async def get_run(sub: str, rg: str, ws: str, run_id: str, request: Request):
        if (refused := refusal(request, config.token, config.v1_scope)) is not None:
            return refused
        run = published(run_id)
        if run is None:
            return error(404, "NotFound", f"Run {run_id} was not found.")
        return JSONResponse(run.to_json())

    # The runs of one published pipeline. Not confirmed in Microsoft's public docs (the REST how-to documents only
    # PipelineSubmit and the run GET); the v1 SDK's PublishedPipeline lists its runs through the pipelines service,
    # and the product's v1 find_run looks a trigger's run up here.
    @router.get(PREFIX + "/Pipeline/{pipeline_id}")
    async def list_runs(sub: str, rg: str, ws: str, pipeline_id: str, request: Request):
        if (refused := refusal(request, config.token, config.v1_scope)) is not None:
            return refused
        return JSONResponse([r.to_json() for r in worker.runs.values()
                             if r.kind == RunKind.PUBLISHED and r.pipeline_id == pipeline_id])

    return router
