"""The local stand-in for an Azure ML published pipeline: the same REST contract, a real training job.

POST .../PipelineRuns/PipelineSubmit/{pipelineId} (Bearer token, ExperimentName, ParameterAssignments,
DataPathAssignments) queues a run; a worker thread downloads the input from the datastore (Azurite),
runs `python -m shared.jobs.training.job` as a separate process (FLAML + LightGBM, MLflow model), and when the
run ends delivers Azure ML's Event Grid events (RunCompleted, or RunStatusChanged for a failed run) to the
subscription URL, retrying with backoff like Event Grid. GET .../PipelineRuns/{runId} returns the run.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from azure.storage.blob import BlobServiceClient
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from local.processes import PROJECT_ROOT
from shared import redaction
from shared.child_env import minimal_env
from shared.domain import pipeline_params
from shared.private_files import open_private_binary, private_dir

log = logging.getLogger("pipeline-endpoint")

PREFIX = ("/pipelines/v1.0/subscriptions/{sub}/resourceGroups/{rg}/providers/"
          "Microsoft.MachineLearningServices/workspaces/{ws}/PipelineRuns")
DEFAULT_PIPELINE_ID = "6b0e9a1c-4d2f-4e8a-9f3b-bankmarketing"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, code: str, message: str) -> JSONResponse:
    """Azure ML's error envelope."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


@dataclass
class LocalRun:
    run_id: str
    pipeline_id: str
    experiment: str
    parameters: dict[str, str]
    data_paths: dict[str, dict[str, str]]
    topic: str
    status: str = "NotStarted"
    created: str = field(default_factory=_now_iso)
    started: str | None = None
    ended: str | None = None
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    delivered: bool = False  # its terminal event reached the subscriber (at-least-once across restarts)

    def to_json(self) -> dict[str, Any]:
        code = {"NotStarted": "NotStarted", "Queued": "NotStarted", "Running": "Running",
                "Completed": "Finished", "Failed": "Failed", "Canceled": "Canceled"}[self.status]
        return {"Id": self.run_id, "PipelineId": self.pipeline_id, "ExperimentName": self.experiment,
                "RunSource": "SDK", "RunType": "HTTP", "ParameterAssignments": self.parameters,
                "DataPathAssignments": self.data_paths,
                "Status": {"StatusCode": code, "RunStatus": self.status, "CreationTime": self.created,
                           "StartTime": self.started, "EndTime": self.ended, "StatusDetail": self.error},
                "Outputs": self.outputs}


@dataclass
class EndpointConfig:
    token: str
    runs_dir: Path
    storage_connection: str
    eventgrid_url: str | None
    pipeline_id: str = DEFAULT_PIPELINE_ID
    # Datastore name -> Azurite container, as a workspace datastore names one container of an account.
    datastores: dict[str, str] = field(default_factory=lambda: {"workspaceblobstore": "datasets"})
    default_budget_s: int = 30
    mlflow_uri: str | None = None
    delivery_attempts: int = 8
    delivery_backoff_s: float = 1.0


class RunWorker:
    """Runs queued pipeline runs one at a time (a 2-core box trains one model at a time)."""

    def __init__(self, config: EndpointConfig):
        self.config = config
        self.runs: dict[str, LocalRun] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="pipeline-runs", daemon=True)
        self._current: subprocess.Popen | None = None
        self._stopping = False
        self._undelivered: list[LocalRun] = []
        self._load()

    def _load(self) -> None:
        """Runs cut short by a stop end as Failed; ended runs whose event was never delivered are re-sent."""
        private_dir(self.config.runs_dir)  # 0700, also when it exists: run logs and inputs are private
        for path in sorted(self.config.runs_dir.glob("*/run.json")):
            try:
                data = json.loads(path.read_text())
                run = LocalRun(**data)
            except (ValueError, TypeError):
                continue
            if run.status in ("NotStarted", "Queued", "Running"):
                run.status, run.error, run.ended = "Failed", "pipeline endpoint stopped during the run", _now_iso()
                self._persist(run)
            if not run.delivered:
                self._undelivered.append(run)
            self.runs[run.run_id] = run

    def start(self) -> None:
        self._thread.start()
        if self._undelivered:
            threading.Thread(target=self._redeliver, name="pipeline-redeliver", daemon=True).start()

    def _redeliver(self) -> None:
        for run in self._undelivered:
            if self._stopping:
                return
            self._deliver(run)

    def stop(self) -> None:
        self._stopping = True
        self._queue.put(None)
        proc = self._current
        if proc and proc.poll() is None:
            proc.terminate()

    def submit(self, run: LocalRun) -> None:
        with self._lock:
            self.runs[run.run_id] = run
        self._persist(run)
        self._queue.put(run.run_id)

    def _persist(self, run: LocalRun) -> None:
        folder = private_dir(self.config.runs_dir / run.run_id)
        tmp = folder / "run.json.tmp"
        tmp.write_text(json.dumps(run.__dict__, indent=2))
        tmp.replace(folder / "run.json")

    def _loop(self) -> None:
        while True:
            run_id = self._queue.get()
            if run_id is None or self._stopping:
                return
            run = self.runs[run_id]
            try:
                self._execute(run)
            except Exception as exc:  # a broken run must not stop the worker
                log.exception("run %s crashed", run_id)
                run.status, run.error, run.ended = "Failed", f"{type(exc).__name__}: {exc}", _now_iso()
            self._persist(run)
            if not self._stopping:
                self._deliver(run)

    def _execute(self, run: LocalRun) -> None:
        folder = self.config.runs_dir / run.run_id
        inputs, outputs = folder / "inputs", folder / "outputs"
        inputs.mkdir(parents=True, exist_ok=True)
        run.status, run.started = "Running", _now_iso()
        self._persist(run)
        data_file = inputs / "data.csv"
        (path_ref,) = run.data_paths.values()
        container = self.config.datastores[path_ref["DataStoreName"]]
        blob_path = path_ref["RelativePath"].lstrip("/")
        blobs = BlobServiceClient.from_connection_string(self.config.storage_connection)
        with open(data_file, "wb") as fh:
            blobs.get_blob_client(container, blob_path).download_blob().readinto(fh)
        argv = [sys.executable, "-m", "shared.jobs.training.job", *self.job_arguments(run, data_file, outputs)]
        log.info("run %s: training %s", run.run_id, path_ref["RelativePath"])
        with open_private_binary(folder / "logs.txt") as logfile:  # 0600, also when it exists
            # an allowlisted environment: not this process's token, storage key or Event Grid URL (system key)
            self._current = subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=logfile, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=minimal_env())
            code = self._current.wait()
        status_file = outputs / "status.json"
        status = json.loads(status_file.read_text()) if status_file.exists() else {}
        run.ended = _now_iso()
        if code == 0 and status.get("status") == "Completed":
            run.status = "Completed"
            run.outputs = {"model": {"Uri": (outputs / "model").resolve().as_uri()},
                           "metrics": status.get("metrics") or {}}
            log.info("run %s completed", run.run_id)
        else:
            run.status = "Canceled" if self._stopping else "Failed"
            ended = f"was stopped by signal {-code}" if code < 0 else f"exited with code {code}"
            run.error = status.get("error") or f"training process {ended}"
            log.warning("run %s failed: %s", run.run_id, run.error)

    def job_arguments(self, run: LocalRun, data_file: Path, outputs: Path) -> list[str]:
        """The training step's arguments: a list (no shell), every value validated against its pipeline_params
        pattern (again: a run stored by an older version is not trusted either), each as one `--flag=value` token
        so no value can be read as another flag."""
        given = pipeline_params.validate(run.parameters)
        params = pipeline_params.with_defaults(given)
        experiment = pipeline_params.PARAMETERS["experiment_name"].parse(given.get("experiment_name")
                                                                        or run.experiment)
        values: dict[str, Any] = {
            "data": data_file, "out": outputs, "budget-s": given.get("time_budget_s", self.config.default_budget_s),
            "seed": params["seed"], "run-id": run.run_id, "dataset-version": params.get("dataset_version", ""),
            "experiment": experiment, "primary-metric": params["primary_metric"]}
        for name in ("exclude_columns", "trigger_id", "reason", "evaluation_percent", "champion_model",
                     "champion_version", "champion_digest", "drift_report"):
            if params.get(name) not in (None, ""):
                values[name.replace("_", "-")] = params[name]
        if self.config.mlflow_uri:
            values["mlflow-uri"] = self.config.mlflow_uri
        return [f"--{flag}={value}" for flag, value in values.items()]

    def event_for(self, run: LocalRun) -> dict[str, Any]:
        completed = run.status == "Completed"
        properties = {"azureml.runsource": "azureml.PipelineRun", "dataset_version":
                      run.parameters.get("dataset_version", "")}
        if run.error:
            properties["error"] = run.error
        data = {"experimentId": str(uuid.uuid5(uuid.NAMESPACE_URL, run.experiment)),
                "experimentName": run.experiment, "runId": run.run_id, "runType": "azureml.PipelineRun",
                "runTags": {k: v for k, v in run.parameters.items() if k in ("trigger_id", "reason")},
                "runProperties": properties}
        if not completed:
            # spelled as the documented RunStatusChanged sample spells it ("runStatus": "failed"), while the run GET
            # says "Failed": consumers must compare it case-insensitively
            # (https://learn.microsoft.com/azure/event-grid/event-schema-machine-learning)
            data["runStatus"] = run.status.lower()
        return {"id": str(uuid.uuid4()), "topic": run.topic,
                "subject": f"experiments/{data['experimentId']}/runs/{run.run_id}",
                "eventType": "Microsoft.MachineLearningServices." + ("RunCompleted" if completed
                                                                     else "RunStatusChanged"),
                "eventTime": run.ended or _now_iso(), "data": data, "dataVersion": "2", "metadataVersion": "1"}

    def _deliver(self, run: LocalRun) -> None:
        url = self.config.eventgrid_url
        if not url:
            return
        event = self.event_for(run)
        for attempt in range(1, self.config.delivery_attempts + 1):
            try:
                response = requests.post(url, json=[event], timeout=120, headers={
                    "aeg-event-type": "Notification", "aeg-subscription-name": "RETRAIN-RUN-EVENTS",
                    "aeg-delivery-count": str(attempt - 1), "aeg-data-version": "2",
                    "aeg-metadata-version": "1"})
                if response.status_code < 300:
                    log.info("run %s: delivered %s (attempt %d)", run.run_id, event["eventType"], attempt)
                    run.delivered = True
                    self._persist(run)
                    return
                log.warning("run %s: event delivery answered %s (attempt %d)", run.run_id,
                            response.status_code, attempt)
            except requests.RequestException as exc:
                log.warning("run %s: event delivery failed (%s, attempt %d)", run.run_id, type(exc).__name__,
                            attempt)
            if self._stopping:
                return
            time.sleep(min(self.config.delivery_backoff_s * 2 ** (attempt - 1), 60))
        log.error("run %s: event dropped after %d attempts (dead-lettered to %s)", run.run_id,
                  self.config.delivery_attempts, self.config.runs_dir / run.run_id / "deadletter.json")
        (self.config.runs_dir / run.run_id / "deadletter.json").write_text(json.dumps(event, indent=2))


def create_app(config: EndpointConfig, worker: RunWorker | None = None) -> FastAPI:
    worker = worker or RunWorker(config)
    app = FastAPI(title="Local Azure ML published pipeline", docs_url=None, redoc_url=None)
    app.state.worker = worker

    def authorized(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), config.token.encode())

    def unauthorized() -> JSONResponse:
        response = _error(401, "AuthenticationFailed", "Missing or invalid bearer token.")
        response.headers["WWW-Authenticate"] = 'Bearer authorization_uri="https://login.microsoftonline.com"'
        return response

    @app.post(PREFIX + "/PipelineSubmit/{pipeline_id}")
    async def submit(sub: str, rg: str, ws: str, pipeline_id: str, request: Request):
        if not authorized(request):
            return unauthorized()
        if pipeline_id != config.pipeline_id:
            return _error(404, "NotFound", f"Published pipeline {pipeline_id} was not found.")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "UserError", "Request body is not valid JSON.")
        if not isinstance(body, dict) or not body.get("ExperimentName"):
            return _error(400, "UserError", "ExperimentName is required.")
        params = body.get("ParameterAssignments") or {}
        try:
            pipeline_params.validate(params)
        except pipeline_params.ParameterError as exc:
            return _error(400, "UserError", str(exc))
        data_paths = body.get("DataPathAssignments") or {}
        if not isinstance(data_paths, dict) or len(data_paths) != 1:
            return _error(400, "UserError", "Exactly one DataPathAssignments entry (the training data) is "
                                            "required, with DataStoreName and RelativePath.")
        (ref,) = data_paths.values()
        if not isinstance(ref, dict) or ref.get("DataStoreName") not in config.datastores or \
                not str(ref.get("RelativePath", "")).strip("/"):
            return _error(400, "UserError", f"DataPathAssignments must name a datastore in {sorted(config.datastores)} "
                                            "and a RelativePath inside it.")
        trigger_id = str(params.get("trigger_id") or "")
        same = [r for r in worker.runs.values() if trigger_id and r.parameters.get("trigger_id") == trigger_id]
        if same:  # a resubmission after a lost answer: the run it already started, never a second one
            log.info("run %s already submitted for trigger %s", same[0].run_id, trigger_id)
            return JSONResponse(same[0].to_json())
        run = LocalRun(run_id=str(uuid.uuid4()), pipeline_id=pipeline_id, experiment=str(body["ExperimentName"]),
                       parameters={str(k): str(v) for k, v in params.items()}, data_paths=data_paths,
                       topic=workspace_topic(sub, rg, ws))
        accepted = run.to_json()  # as submitted: the worker may start it before this answer is sent
        worker.submit(run)
        log.info("run %s queued for experiment %s", run.run_id, run.experiment)
        return JSONResponse(accepted)

    @app.get(PREFIX + "/{run_id}")
    async def get_run(sub: str, rg: str, ws: str, run_id: str, request: Request):
        if not authorized(request):
            return unauthorized()
        run = worker.runs.get(run_id)
        if run is None:
            return _error(404, "NotFound", f"Run {run_id} was not found.")
        return JSONResponse(run.to_json())

    @app.get(PREFIX + "/Pipeline/{pipeline_id}")
    async def list_runs(sub: str, rg: str, ws: str, pipeline_id: str, request: Request):
        if not authorized(request):
            return unauthorized()
        return JSONResponse([r.to_json() for r in worker.runs.values() if r.pipeline_id == pipeline_id])

    @app.get("/health")
    async def health():
        return {"status": "ok", "runs": len(worker.runs)}

    return app


def _parse_datastores(text: str) -> dict[str, str]:
    """`name=container[,name=container]`: the datastores this local workspace has."""
    pairs = [item.split("=", 1) for item in text.split(",") if "=" in item]
    return {name.strip(): container.strip() for name, container in pairs}


LOCAL_WORKSPACE = {"sub": "00000000-0000-0000-0000-000000000000", "rg": "local-rg", "ws": "local-ws"}


def submit_url(base: str, pipeline_id: str = DEFAULT_PIPELINE_ID) -> str:
    """The URL users would copy from the portal, pointed at the local endpoint."""
    path = PREFIX.format(**LOCAL_WORKSPACE)
    return f"{base.rstrip('/')}{path}/PipelineSubmit/{pipeline_id}"


def workspace_topic(sub: str, rg: str, ws: str) -> str:
    """The `topic` of a workspace's run events: its ARM id
    (https://learn.microsoft.com/azure/event-grid/event-schema-machine-learning)."""
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"


def local_workspace_id() -> str:
    """The ARM id of the stand-in workspace `submit_url` points at: the local stack's AZUREML_WORKSPACE_ID, so the
    run events this endpoint stamps with it pass the completion handler's topic check."""
    return workspace_topic(**LOCAL_WORKSPACE)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8401)
    parser.add_argument("--runs-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    redaction.install_logging()  # the pipeline token, the Event Grid key and the storage key: never logged
    config = EndpointConfig(
        token=os.environ["LOCAL_PIPELINE_TOKEN"], runs_dir=args.runs_dir,
        storage_connection=os.environ["AzureWebJobsStorage"], eventgrid_url=os.environ.get("EVENTGRID_WEBHOOK_URL"),
        default_budget_s=int(os.environ.get("TRAINING_BUDGET_S", "30")),
        mlflow_uri=os.environ.get("MLFLOW_TRACKING_URI"),
        datastores=_parse_datastores(os.environ.get("LOCAL_DATASTORES", "workspaceblobstore=datasets")))
    worker = RunWorker(config)
    worker.start()
    app = create_app(config, worker)
    try:
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    finally:
        worker.stop()


if __name__ == "__main__":
    main()
