"""The local stand-in for Azure ML's training pipeline: the same REST contracts, a real training job.

v2 (default, PIPELINE_KIND=batch-endpoint): `POST /jobs` is the batch endpoint's invocation host (ml.azure.com
token), and `GET /subscriptions/…/workspaces/{ws}/jobs[/{name}]?api-version=…` the workspace's ARM jobs API
(management.azure.com token). v1 (retired, PIPELINE_KIND=published): `POST /pipelines/v1.0/…/PipelineRuns/
PipelineSubmit/{pipelineId}` and `GET …/PipelineRuns/{runId}`. A worker downloads the input from the datastore
(Azurite), runs `python -m shared.jobs.training.job` as a separate process, and when the run ends delivers Azure
ML's Event Grid event (RunCompleted, or RunStatusChanged) with Event Grid's delivery semantics
(local/eventgrid_delivery.py). Modules: runs (the run and its store), worker (training), events (delivery), auth
(tokens per audience), v1_routes, v2_routes (invoke), arm_jobs (job GET / list), app (FastAPI + process)."""

from local.pipeline_endpoint.app import create_app, invocation_url, main, submit_url
from local.pipeline_endpoint.runs import LocalRun, RunKind, RunStatus
from local.pipeline_endpoint.worker import DEFAULT_PIPELINE_ID, EndpointConfig, RunWorker
from local.pipeline_endpoint.workspace import local_workspace_id, workspace_topic

__all__ = ["DEFAULT_PIPELINE_ID", "EndpointConfig", "LocalRun", "RunKind", "RunStatus", "RunWorker", "create_app",
           "invocation_url", "local_workspace_id", "main", "submit_url", "workspace_topic"]
