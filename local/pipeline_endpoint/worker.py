"""The training behind both contracts: queued runs trained one at a time by the real training step."""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

from local.pipeline_endpoint.events import RunEventDelivery, event_for
from local.pipeline_endpoint.runs import ACTIVE, LocalRun, RunStatus, RunStore, now_iso
from local.processes import PROJECT_ROOT
from shared.adapters.credentials import audience
from shared.child_env import minimal_env
from shared.domain import pipeline_params
from shared.private_files import open_private_binary

log = logging.getLogger("pipeline-endpoint")

DEFAULT_PIPELINE_ID = "6b0e9a1c-4d2f-4e8a-9f3b-bankmarketing"
ARM_SCOPE = "https://management.azure.com/.default"
ML_SCOPE = "https://ml.azure.com/.default"


@dataclass
class EndpointConfig:
    token: str  # the secret every audience's token derives from (shared.adapters.credentials.scoped_token)
    runs_dir: Path
    storage_connection: str
    eventgrid_url: str | None
    pipeline_id: str = DEFAULT_PIPELINE_ID
    # Datastore name -> Azurite container, as a workspace datastore names one container of an account.
    datastores: dict[str, str] = field(default_factory=lambda: {"workspaceblobstore": "datasets"})
    default_budget_s: int = 30
    mlflow_uri: str | None = None
    # v1 token audience: settings.pipeline_token_scope (ARM by default, as `az account get-access-token` gives)
    v1_scope: str = ARM_SCOPE
    # v2: the batch endpoint's deployments (`retrain azure publish --deployment-name`, default "train") and the
    # component's data input(s) (shared.jobs.publish: `training_data`, settings PIPELINE_DATA_INPUT)
    deployments: tuple[str, ...] = ("train",)
    data_inputs: tuple[str, ...] = ("training_data",)
    endpoint_name: str = "bankmarketing-retrain"

    @property
    def v1_audience(self) -> str:
        return audience(self.v1_scope)


class RunWorker:
    """Runs queued pipeline runs one at a time (a 2-core box trains one model at a time)."""

    def __init__(self, config: EndpointConfig, delivery: RunEventDelivery | None = None):
        self.config = config
        self.store = RunStore(config.runs_dir)
        self.delivery = delivery or RunEventDelivery(config.eventgrid_url, self.store)
        self.runs: dict[str, LocalRun] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="pipeline-runs", daemon=True)
        self._current: subprocess.Popen | None = None
        self._stopping = False
        self._load()

    def _load(self) -> None:
        """Runs cut short by a stop end as Failed; ended runs whose event is still to deliver are queued again."""
        for run in self.store.load_all():
            if run.status in ACTIVE:
                run.status, run.error, run.ended = RunStatus.FAILED, "pipeline endpoint stopped during the run", \
                    now_iso()
                self.store.save(run)
            self.runs[run.run_id] = run
            self.delivery.enqueue(run)

    def start(self) -> None:
        self._thread.start()
        self.delivery.start()

    def stop(self) -> None:
        self._stopping = True
        self._queue.put(None)
        self.delivery.stop()
        proc = self._current
        if proc and proc.poll() is None:
            proc.terminate()

    def add(self, run: LocalRun) -> bool:
        """Queue `run`; False if its name is taken (job names are unique in a workspace)."""
        with self._lock:
            if run.run_id in self.runs:
                return False
            self.runs[run.run_id] = run
        self.store.save(run)
        self._queue.put(run.run_id)
        return True

    def submit(self, run: LocalRun) -> None:
        if not self.add(run):
            raise ValueError(f"run {run.run_id} exists")

    def event_for(self, run: LocalRun) -> dict[str, Any]:
        return event_for(run)

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
                run.status, run.error, run.ended = RunStatus.FAILED, f"{type(exc).__name__}: {exc}", now_iso()
            self.store.save(run)
            self.delivery.enqueue(run)

    def _execute(self, run: LocalRun) -> None:
        folder = self.config.runs_dir / run.run_id
        inputs, outputs = folder / "inputs", folder / "outputs"
        inputs.mkdir(parents=True, exist_ok=True)
        run.status, run.started = RunStatus.RUNNING, now_iso()
        self.store.save(run)
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
        run.ended = now_iso()
        if code == 0 and status.get("status") == "Completed":
            run.status = RunStatus.COMPLETED
            run.outputs = {"model": {"Uri": (outputs / "model").resolve().as_uri()},
                           "metrics": status.get("metrics") or {}}
            log.info("run %s completed", run.run_id)
        else:
            run.status = RunStatus.CANCELED if self._stopping else RunStatus.FAILED
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
        for name in ("exclude_columns", "trigger_id", "reason", "evaluation_percent", "evaluation_rows",
                     "champion_model", "champion_version", "champion_digest", "drift_report"):
            if params.get(name) not in (None, ""):
                values[name.replace("_", "-")] = params[name]
        if self.config.mlflow_uri:
            values["mlflow-uri"] = self.config.mlflow_uri
        return [f"--{flag}={value}" for flag, value in values.items()]
