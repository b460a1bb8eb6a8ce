"""The FastAPI app and the process: both contracts on one port, the worker and the event delivery behind them."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from fastapi import FastAPI

from local.pipeline_endpoint.arm_jobs import arm_router
from local.pipeline_endpoint.v1_routes import PREFIX, v1_router
from local.pipeline_endpoint.v2_routes import v2_router
from local.pipeline_endpoint.worker import ARM_SCOPE, DEFAULT_PIPELINE_ID, EndpointConfig, RunWorker
from local.pipeline_endpoint.workspace import LOCAL_WORKSPACE, local_workspace_id
from shared import redaction


def create_app(config: EndpointConfig, worker: RunWorker | None = None,
               workspace_id: str | None = None) -> FastAPI:
    worker = worker or RunWorker(config)
    app = FastAPI(title="Local Azure ML pipeline endpoint (batch endpoint + ARM jobs; v1 published pipeline)",
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.worker = worker
    app.include_router(v2_router(config, worker, workspace_id or local_workspace_id()))
    app.include_router(arm_router(config, worker))
    app.include_router(v1_router(config, worker))

    @app.get("/health")
    async def health():
        return {"status": "ok", "runs": len(worker.runs)}

    return app


def submit_url(base: str, pipeline_id: str = DEFAULT_PIPELINE_ID) -> str:
    """The v1 URL users would copy from the portal, pointed at the local endpoint."""
    path = PREFIX.format(**LOCAL_WORKSPACE)
    return f"{base.rstrip('/')}{path}/PipelineSubmit/{pipeline_id}"


def invocation_url(base: str) -> str:
    """The v2 batch endpoint's invocation URL (Azure: https://{endpoint}.{region}.inference.ml.azure.com/jobs)."""
    return f"{base.rstrip('/')}/jobs"


def _parse_datastores(text: str) -> dict[str, str]:
    """`name=container[,name=container]`: the datastores this local workspace has."""
    pairs = [item.split("=", 1) for item in text.split(",") if "=" in item]
    return {name.strip(): container.strip() for name, container in pairs}


def config_from_env(runs_dir: Path) -> EndpointConfig:
    """Secrets and URLs from the environment, never argv."""
    deployment = os.environ.get("PIPELINE_BATCH_DEPLOYMENT", "").strip()
    return EndpointConfig(
        token=os.environ["LOCAL_PIPELINE_TOKEN"], runs_dir=runs_dir,
        storage_connection=os.environ["AzureWebJobsStorage"], eventgrid_url=os.environ.get("EVENTGRID_WEBHOOK_URL"),
        default_budget_s=int(os.environ.get("TRAINING_BUDGET_S", "30")),
        mlflow_uri=os.environ.get("MLFLOW_TRACKING_URI"),
        datastores=_parse_datastores(os.environ.get("LOCAL_DATASTORES", "workspaceblobstore=datasets")),
        v1_scope=os.environ.get("PIPELINE_TOKEN_SCOPE") or ARM_SCOPE,
        deployments=(deployment,) if deployment else ("train",),
        data_inputs=(os.environ.get("PIPELINE_DATA_INPUT") or "training_data",))


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Local Azure ML pipeline endpoint")
    parser.add_argument("--port", type=int, default=8401)
    parser.add_argument("--runs-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    redaction.install_logging()  # the pipeline token, the Event Grid key and the storage key: never logged
    config = config_from_env(args.runs_dir)
    worker = RunWorker(config)
    worker.start()
    app = create_app(config, worker, os.environ.get("AZUREML_WORKSPACE_ID") or None)
    try:
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    finally:
        worker.stop()
