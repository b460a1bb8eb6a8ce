"""The embedded local stack behind `retrain up`: Azurite, scoring server, pipeline endpoint, Functions host.

Every part is a real process on 127.0.0.1 in its own process group; `stop()` ends them in reverse order.
The app settings the Functions host gets are the same names an Azure deployment sets.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path

from local import stack_secrets
from local.functions_host.keys import SYSTEM_KEY_BLOBS, load_or_create_keys
from local.pipeline_endpoint import invocation_url, local_workspace_id, submit_url
from local.processes import (
    PROJECT_ROOT,
    Child,
    PortInUse,
    azurite_argv,
    azurite_env,
    free_ports,
    python_argv,
    start_child,
)
from shared.adapters.credentials import StaticTokenCredential
from shared.bootstrap import build_stores, local_pipeline, local_runs_dir
from shared.ports import PipelineClient
from shared.private_files import private_dir
from shared.scoring.trusted_model import UntrustedModel, check_model_folder
from shared.services.http_guard import HOST_BODY_LIMIT
from shared.settings import AZURITE_ACCOUNT, Settings

INFERENCE_CONTAINER = "inference-data"  # where the scoring server collects its inputs (INFERENCE_CONTAINER)


@dataclass
class StackConfig:
    local_dir: Path = field(default_factory=lambda: PROJECT_ROOT / ".local")
    blob_port: int = 10000
    queue_port: int = 10001
    table_port: int = 10002
    host_port: int = 7071
    pipeline_port: int = 8401
    scoring_port: int = 8402
    training_budget_s: int = 30
    blob_poll_s: float = 1.0
    drift_schedule: str = "0 0 * * * *"
    reconcile_schedule: str = "0 */2 * * * *"
    # PIPELINE_KIND: v2 first, as in Azure (the batch endpoint's invocation + the ARM jobs API, both served by the
    # local pipeline endpoint); "published" runs the retired v1 PipelineSubmit contract instead.
    pipeline_kind: str = "batch-endpoint"
    extra_settings: dict[str, str] = field(default_factory=dict)

    @property
    def storage_key(self) -> str:
        """Azurite's generated account key (`.local/secrets.json`), created with the other secrets if missing."""
        return stack_secrets.load_or_create(self.local_dir)[stack_secrets.STORAGE_KEY]

    @property
    def connection_string(self) -> str:
        return stack_secrets.storage_connection_string(self.storage_key, blob=self.blob_port, queue=self.queue_port,
                                                       table=self.table_port)

    @property
    def runs_dir(self) -> Path:
        """The local pipeline's run outputs: the only place model folders are loaded from (the models root)."""
        return local_runs_dir(self.local_dir)

    @property
    def host_url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def pipeline_base(self) -> str:
        """The local pipeline endpoint: the batch endpoint's invocation host and the workspace's ARM jobs API."""
        return f"http://127.0.0.1:{self.pipeline_port}"

    @property
    def pipeline_url(self) -> str:
        """PIPELINE_ENDPOINT_URL: the batch endpoint's invocation URL (`…/jobs`), or v1's PipelineSubmit URL."""
        if self.pipeline_kind == "published":
            return submit_url(self.pipeline_base)
        return invocation_url(self.pipeline_base)

    @property
    def scoring_url(self) -> str:
        return f"http://127.0.0.1:{self.scoring_port}"


RUN_EVENTS_FUNCTION = "run_completed"  # function_app/run_completed.py: the Event Grid trigger for run events


def eventgrid_webhook_url(host_url: str, system_key: str, function_name: str = RUN_EVENTS_FUNCTION) -> str:
    """The Event Grid subscription's endpoint for an Event Grid-triggered function, key included:
    `{host}/runtime/webhooks/eventgrid?functionName={function}&code={eventgrid_extension system key}`
    (https://learn.microsoft.com/azure/azure-functions/event-grid-how-tos, "Webhook endpoint URL"). A secret: never
    logged (shared.redaction masks `code=`)."""
    return f"{host_url.rstrip('/')}/runtime/webhooks/eventgrid?functionName={function_name}&code={system_key}"


def dashboard_url(host_url: str, function_key: str) -> str:
    """The dashboard page with the function key as `?code=` (how a browser passes it, as Azure Functions accepts
    it: https://learn.microsoft.com/azure/azure-functions/function-keys-how-to). A secret: shown to the user who
    asked, never logged (shared.redaction masks `code=`)."""
    from urllib.parse import quote

    return f"{host_url.rstrip('/')}/api/dashboard?code={quote(function_key, safe='')}"


class Stack:
    def __init__(self, config: StackConfig):
        self.config = config
        self.children: list[Child] = []
        self._specs: dict[str, tuple[list[str], tuple[int, ...], dict[str, str]]] = {}  # for restart(name)
        self.secrets = stack_secrets.load_or_create(config.local_dir)
        self.host_keys = load_or_create_keys(config.local_dir)

    @property
    def logs_dir(self) -> Path:
        return self.config.local_dir / "logs"

    def app_settings(self) -> dict[str, str]:
        """What the Functions host sees: the same setting names as an Azure deployment."""
        c = self.config
        return {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "PYTHON_SCRIPT_FILE_NAME": "main.py",
            "AzureWebJobsStorage": c.connection_string,
            "RETRAIN_MODE": "local",
            "RETRAIN_LOCAL_DIR": str(c.local_dir),
            "PIPELINE_KIND": c.pipeline_kind,
            "PIPELINE_ENDPOINT_URL": c.pipeline_url,
            "AZUREML_ARM_URL": c.pipeline_base,  # the jobs API's local stand-in (job status, lookups)
            "AZUREML_WORKSPACE_ID": local_workspace_id(),  # the topic the local pipeline stamps on run events
            "SCORING_URL": c.scoring_url,
            "TRAINING_BUDGET_S": str(c.training_budget_s),
            "DRIFT_SCHEDULE": c.drift_schedule,
            "RECONCILE_SCHEDULE": c.reconcile_schedule,
            "OUTBOX_SCHEDULE": "*/2 * * * * *",  # the local loop stays snappy; Azure's default is every 10 s
            "INCOMING_CONTAINER": "incoming",
            "ROLLOUT_QUEUE": "rollouts",
            "BLOB_TRIGGER_POLL_S": str(c.blob_poll_s),
            "LOCAL_PIPELINE_TOKEN": self.secrets["pipeline_token"],
            "SCORING_KEY": self.secrets["scoring_key"],
            "SCORING_ADMIN_KEY": self.secrets["scoring_admin_key"],
            "WEBHOOK_SECRET": self.secrets["webhook_secret"],
            # the host's own body cap: what the routes accept, not the platform's 100 MB (http_guard.HOST_BODY_LIMIT)
            "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": str(HOST_BODY_LIMIT),
            **c.extra_settings,
        }

    def _workspace_settings(self) -> dict[str, str]:
        """What the stand-in workspace must agree on with the app: its id (the run events' topic), the batch
        deployment, the v1 token audience and the pipeline's data input."""
        names = ("AZUREML_WORKSPACE_ID", "PIPELINE_BATCH_DEPLOYMENT", "PIPELINE_TOKEN_SCOPE", "PIPELINE_DATA_INPUT")
        settings = self.app_settings()
        return {name: settings[name] for name in names if settings.get(name)}

    def pipeline_client(self) -> PipelineClient:
        """The client the app builds from these settings (same kind, URLs and token audience), for the CLI and
        tests that follow a run from outside the host."""
        settings = Settings.from_env(self.app_settings(), check=False)
        return local_pipeline(settings, StaticTokenCredential(self.secrets["pipeline_token"]), self.config.local_dir)

    def eventgrid_webhook(self) -> str:
        return eventgrid_webhook_url(self.config.host_url, self.host_keys.system_keys["eventgrid_extension"])

    def blobs_webhook(self, function_name: str = "blob_upload") -> str:
        """The blob trigger's Event Grid webhook, as infra/scripts/postdeploy.sh subscribes it."""
        key = self.host_keys.system_keys[SYSTEM_KEY_BLOBS]
        return f"{self.config.host_url}/runtime/webhooks/blobs?functionName=Host.Functions.{function_name}&code={key}"

    def _storage_events_argv(self) -> list[str]:
        """The subscription's filter, as postdeploy.sh sets it: BlobCreated under the incoming container."""
        container = self.app_settings()["INCOMING_CONTAINER"]
        return python_argv("local.storage_events", "--subject-begins-with",
                           f"/blobServices/default/containers/{container}/blobs/",
                           "--state", str(self.config.local_dir / "storage-events.json"))

    def start(self, on_step=None) -> None:
        c = self.config
        step = on_step or (lambda _msg: None)
        private_dir(c.local_dir)  # .local/: 0700, also when it exists
        try:
            step("starting Azurite (blob, queue, table)")
            self._start("azurite", azurite_argv(c.local_dir / "azurite", c.blob_port, c.queue_port, c.table_port),
                        (c.blob_port, c.queue_port, c.table_port),
                        azurite_env(AZURITE_ACCOUNT, self.secrets[stack_secrets.STORAGE_KEY]))
            step("starting the scoring endpoint")
            self._start("scoring", self._scoring_argv(step),
                        (c.scoring_port,), {"SCORING_KEY": self.secrets["scoring_key"],
                                            "SCORING_ADMIN_KEY": self.secrets["scoring_admin_key"],
                                            "INFERENCE_STORAGE": c.connection_string})
            step("starting the pipeline endpoint")
            self._start("pipeline", python_argv("local.pipeline_endpoint", "--port", str(c.pipeline_port),
                                                "--runs-dir", str(c.runs_dir)),
                        (c.pipeline_port,), {"LOCAL_PIPELINE_TOKEN": self.secrets["pipeline_token"],
                                             "AzureWebJobsStorage": c.connection_string,
                                             "EVENTGRID_WEBHOOK_URL": self.eventgrid_webhook(),
                                             "TRAINING_BUDGET_S": str(c.training_budget_s),
                                             "LOCAL_DATASTORES": "workspaceblobstore=datasets",
                                             "MLFLOW_TRACKING_URI": (c.local_dir / "mlruns").resolve().as_uri(),
                                             **self._workspace_settings()})
            step("starting the Functions host")
            self._start("functions", python_argv("local.functions_host", "--script-root", str(PROJECT_ROOT),
                                                 "--port", str(c.host_port)),
                        (c.host_port,), self.app_settings())
            if self.app_settings().get("BLOB_TRIGGER_SOURCE", "EventGrid") == "EventGrid":
                step("starting the storage events (the Event Grid system topic's stand-in)")
                self._start("storage-events", self._storage_events_argv(), (),
                            {"AzureWebJobsStorage": c.connection_string,
                             "STORAGE_EVENTS_WEBHOOK_URL": self.blobs_webhook()})
        except BaseException:
            self.stop()
            raise
        self._write_state()

    def _scoring_argv(self, step=None) -> list[str]:
        c = self.config
        return python_argv("local.scoring_server", "--port", str(c.scoring_port), "--collect-container",
                           INFERENCE_CONTAINER, "--models-root", str(c.runs_dir), *self._live_model_args(step))

    def _live_model_args(self, step=None) -> list[str]:
        """After a restart the scoring endpoint serves the model the registry says is live, when its folder is
        under the run outputs and its content still matches the digest registered for it (the scoring server
        checks again before it loads). Otherwise it starts empty (404 until a deploy) and says why."""
        live = build_stores(Settings(storage_connection=self.config.connection_string)).models.live()
        if live is None or not Path(live.model_dir).exists():
            return []
        try:
            check_model_folder(live.model_dir, root=self.config.runs_dir, expected_digest=live.digest,
                               version=live.version)
        except UntrustedModel as exc:
            (step or (lambda _msg: None))(f"not serving the live model v{live.version} after the restart: {exc}")
            return []
        return ["--model-dir", live.model_dir, "--model-version", str(live.version), "--model-digest", live.digest]

    def _start(self, name: str, argv: list[str], ports: tuple[int, ...], env: dict[str, str]) -> None:
        child = start_child(name, argv, ports=ports, log_dir=self.logs_dir, env=env)
        self._specs[name] = (argv, ports, env)
        self.children.append(child)
        child.wait_ready(90)

    def _write_state(self) -> None:
        """Where things are (no secrets): read by `retrain upload/status` from another terminal."""
        c = self.config
        state = {"pid": os.getpid(), "host_url": c.host_url, "scoring_url": c.scoring_url,
                 "pipeline_url": c.pipeline_url, "ports": {k: v for k, v in asdict(c).items() if k.endswith("_port")}}
        (c.local_dir / "stack.json").write_text(json.dumps(state, indent=2))

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        state = self.config.local_dir / "stack.json"
        if state.exists():
            state.unlink()

    def dead_children(self) -> list[str]:
        return [c.name for c in self.children if c.proc.poll() is not None]

    # one child at a time (fault injection: bench/faults.py) -------------------------------------------------
    def child(self, name: str) -> Child:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(f"no child named {name!r} (have {[c.name for c in self.children]})")

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 15.0) -> int:
        """Send `sig` to one child's process group (SIGKILL: a crash, nothing runs on the way out) and wait
        for it to end; returns its exit code. It stays listed (dead) until `restart(name)`."""
        child = self.child(name)
        if child.proc.poll() is None:
            try:
                os.killpg(child.proc.pid, sig)
            except ProcessLookupError:
                pass
            child.proc.wait(timeout)
        if child._log is not None:
            child._log.close()
            child._log = None
        return child.proc.returncode

    def restart(self, name: str, timeout: float = 90.0) -> Child:
        """Stop one child as `stop()` does (SIGTERM, then SIGKILL) if it still runs, and start it again with the
        same command, ports, settings and local dir; waits until its ports answer."""
        old = self.child(name)
        old.stop()
        argv, ports, env = self._specs[name]
        if name == "scoring":  # serve what is live now (checked again), not what was live when the stack started
            argv = self._scoring_argv()
            self._specs[name] = (argv, ports, env)
        new = start_child(name, argv, ports=ports, log_dir=self.logs_dir, env=env)
        self.children[self.children.index(old)] = new
        new.wait_ready(timeout)
        return new


STACK_PORTS = ("blob_port", "queue_port", "table_port", "host_port", "pipeline_port", "scoring_port")


def start_on_free_ports(local_dir: Path, attempts: int = 5, on_step=None, **config) -> Stack:
    """A stack on fresh loopback ports (tests, benches), started again on new ports when a child finds one of
    them taken in the moment between choosing and binding it (`PortInUse`). `retrain up` keeps its fixed ports."""
    for _ in range(attempts):
        ports = dict(zip(STACK_PORTS, free_ports(len(STACK_PORTS)), strict=True))
        stack = Stack(StackConfig(local_dir=local_dir, **ports, **config))
        try:
            stack.start(on_step)  # stops what it started before raising
        except PortInUse:
            continue
        return stack
    raise PortInUse(f"the local stack lost a port on each of {attempts} starts; see {local_dir / 'logs'}")
