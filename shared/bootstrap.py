"""Settings -> adapters -> collaborator bundles. The only place that chooses between local and Azure
implementations.

Each use case gets ONE bundle (shared.services.*: `RetrainDispatch`, `UploadIntake`, `WebhookIntake`,
`RunCompletion`/`Deployment`, `DriftCheck`, `DriftOnDemand`) whose fields are typed by the Protocols in
shared.ports; a trigger passes its bundle as one argument. Built once per worker process and reused across
invocations (as the Azure Functions samples do with SDK clients), so connections are pooled and settings are read
once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.core.credentials import TokenCredential
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared import redaction, telemetry
from shared.adapters import storage
from shared.adapters.credentials import StaticTokenCredential, azure_credential
from shared.adapters.dataset_store import DatasetStore
from shared.adapters.drift_offload import AzureMLDriftJobs, LocalDriftJobs, WindowStorage
from shared.adapters.incoming import IncomingBlobs
from shared.adapters.job_outputs import JobOutputs, LocalJobOutputs, WithJobOutputs
from shared.adapters.outbox import Outbox
from shared.adapters.pipeline_client import BatchEndpointPipelineClient, PublishedPipelineClient
from shared.adapters.quarantine import Quarantine
from shared.adapters.record_stores import AuditStore, ModelRegistry, RunStore
from shared.adapters.reports import ContainerReports
from shared.adapters.rollout_queue import rollout_queue
from shared.adapters.scoring import LocalScoringDeployer
from shared.adapters.webhook_state import IdempotencyStore, RateLimiter, RejectionLog, ReplayGuard, SingleFlight
from shared.domain.promotion import PromotionPolicy
from shared.ports import (
    AuditLog,
    DatasetLog,
    Deployer,
    DriftJobs,
    InferenceReader,
    ModelLog,
    PipelineClient,
    ReportReader,
    ReportWriter,
    RetrainOutbox,
    RunLog,
    Scorer,
)
from shared.services.check_drift import DriftCheck, DriftPolicy
from shared.services.dispatch import DispatchPolicy, RetrainDispatch
from shared.services.drift_on_demand import DriftHttpGuard, DriftOnDemand
from shared.services.health import HealthChecker, table_probe
from shared.services.http_retrain import WebhookGuard, WebhookIntake
from shared.services.on_run_completed import Deployment, RunCompletion
from shared.services.on_upload import UploadIntake, UploadLimits
from shared.services.reconcile import ReconcileLimits
from shared.services.retrain import PipelineTarget
from shared.settings import Settings, SettingsError, get_settings

if TYPE_CHECKING:  # imported when first used: azure-ai-ml takes a second or two at cold start
    from shared.adapters.azure_online import AzureOnlineDeployer


@dataclass(frozen=True)
class Stores:
    """The durable records, which need nothing but storage (the CLI reads them too)."""

    datasets: DatasetStore
    audit: AuditStore
    runs: RunStore
    models: ModelRegistry
    outbox: Outbox
    rejections: RejectionLog


def build_stores(settings: Settings, credential: TokenCredential | None = None) -> Stores:
    blobs = storage.blob_service(settings, credential)
    tables = storage.table_service(settings, credential)
    return Stores(
        datasets=DatasetStore(blobs, storage.ensure_table(tables, settings.datasets_table),
                              container=settings.datasets_container, name=settings.dataset_name),
        audit=AuditStore(storage.ensure_table(tables, settings.audit_table)),
        runs=RunStore(storage.ensure_table(tables, settings.runs_table)),
        models=ModelRegistry(storage.ensure_table(tables, settings.models_table)),
        outbox=Outbox(storage.ensure_table(tables, settings.outbox_table)),
        rejections=RejectionLog(storage.ensure_table(tables, settings.webhook_table), settings.reject_limit),
    )


@dataclass(frozen=True)
class Services:
    """The bundles, one per use case, and the parts they share (the parts for callers that read them, e.g. the
    CLI's registry or a test's pipeline client)."""

    settings: Settings
    datasets: DatasetLog
    audit: AuditLog
    runs: RunLog
    models: ModelLog
    outbox: RetrainOutbox
    pipeline: PipelineClient
    deployer: Deployer
    scorer: Scorer | None  # ScoringClient (local) or a lazily built AzureEndpointScorer
    retrain: RetrainDispatch  # every trigger's way to ask for a retrain (outbox, single flight, retries)
    upload: UploadIntake  # the blob trigger
    webhook: WebhookIntake  # POST /api/retrain: secret(s), replay guard, rate limit, idempotency
    completion: RunCompletion  # the run-completed event and the reconcile timer
    reconcile: ReconcileLimits
    drift: DriftCheck  # the drift timer and POST /api/drift-check
    drift_on_demand: DriftOnDemand  # one drift check at a time (HTTP and timer), across instances; the route's guard
    reports: ReportReader  # the reports container read back (drift reports, replay figures): the dashboard

    @property
    def deployment(self) -> Deployment:
        """What a deployment needs (also `retrain promote` / `retrain rollback`)."""
        return self.completion.deployment


def _resolved(name: str, value: str) -> str:
    """A Key Vault reference the platform could not resolve reaches the app as its literal `@Microsoft.KeyVault(...)`
    text — a guessable string, never to be used as a key: treated as unset."""
    if value.startswith("@Microsoft.KeyVault("):
        logging.getLogger(__name__).error("app setting %s is an unresolved Key Vault reference (does the identity "
                                          "have Key Vault Secrets User?); treated as unset", name)
        return ""
    return value


def secret_value(name: str) -> str:
    """A secret app setting, or "" when unset (or an unresolved Key Vault reference)."""
    return _resolved(name, os.environ.get(name, ""))


def _secret(name: str) -> str:
    """A secret app setting (a Key Vault reference in Azure; `.local/secrets.json` via `retrain up`)."""
    value = _resolved(name, os.environ.get(name, ""))
    if not value:
        raise SettingsError(f"secret setting {name} is not set (or its Key Vault reference is unresolved)")
    return value


def pipeline_client(settings: Settings,
                    credential: TokenCredential) -> PublishedPipelineClient | BatchEndpointPipelineClient:
    """v1 published pipeline / pipeline endpoint, or v2 pipeline component behind a batch endpoint."""
    common = {"timeout_s": settings.pipeline_timeout_s, "max_retries": settings.pipeline_max_retries}
    if settings.pipeline_kind == "batch-endpoint":
        return BatchEndpointPipelineClient(settings.pipeline_endpoint_url, credential,
                                           workspace_id=settings.azureml_workspace_id,
                                           arm_url=settings.azureml_arm_url,
                                           deployment=settings.pipeline_batch_deployment or None, **common)
    return PublishedPipelineClient(settings.pipeline_endpoint_url, credential, scope=settings.pipeline_token_scope,
                                   **common)


def local_runs_dir(local_dir: str | Path) -> Path:
    """Where the local pipeline endpoint keeps its runs (the stack starts it with this folder): the only place local
    model folders come from."""
    return Path(local_dir) / "pipeline" / "runs"


def local_pipeline(settings: Settings, credential: TokenCredential, local_dir: str | Path) -> PipelineClient:
    """The local stack's pipeline client: the same client as in Azure; a v2 job's outputs are read through the
    documented job-output URI from the local endpoint's runs folder, as JobOutputs reads them from the workspace."""
    client = pipeline_client(settings, credential)
    if settings.pipeline_kind == "batch-endpoint":
        return WithJobOutputs(client, LocalJobOutputs(local_runs_dir(local_dir)))
    return client


def build(settings: Settings) -> Services:
    azure = settings.mode == "azure"
    local_dir = os.environ.get("RETRAIN_LOCAL_DIR")
    redaction.install_logging(settings.extra or None)  # every logger of the app masks the secret settings
    # In Azure the exporter authenticates with the app's identity, so Application Insights can refuse key-only
    # ingestion (DisableLocalAuth); locally the connection string alone (a loopback test endpoint) is enough.
    telemetry.configure_from_env(settings.extra or None, local_dir=local_dir if (local_dir and not azure) else None,
                                 azure_options={"credential": azure_credential()} if azure else None)
    storage_credential = azure_credential() if (azure and settings.storage_account_url) else None
    blobs = storage.blob_service(settings, storage_credential)
    tables = storage.table_service(settings, storage_credential)
    stores = build_stores(settings, storage_credential)
    for container in (settings.incoming_container, settings.datasets_container, settings.quarantine_container,
                      settings.inference_container, settings.reports_container):
        storage.ensure_container(blobs, container)

    from shared.adapters.inference_data import collector_container  # pandas: only when services are built

    ml_client = workspace_client(settings) if azure else None
    collected = (datastore_collector(ml_client, settings.inference_datastore, blobs)
                 if ml_client is not None and settings.inference_datastore
                 else collector_container(blobs, settings.inference_container,
                                          account_url=settings.inference_account_url, credential=storage_credential))
    window_storage = WindowStorage(inference=collected, endpoint=settings.online_endpoint,
                                   datasets=blobs.get_container_client(settings.datasets_container),
                                   reports=blobs.get_container_client(settings.reports_container))
    drift_jobs: DriftJobs | None
    deployer: Deployer
    scorer: Scorer | None
    if azure:
        pipeline_credential = azure_credential()
        drift_jobs = AzureMLDriftJobs(window_storage, ml_client, settings.drift_compute,
                                      partitions=settings.drift_partitions or 8) if settings.drift_compute else None
        azure_online = azure_deployer(settings, ml_client)
        deployer, scorer = azure_online, LazyScorer(azure_online.scorer)
        pipeline: PipelineClient = WithJobOutputs(pipeline_client(settings, pipeline_credential), JobOutputs(ml_client))
    else:
        pipeline_credential = StaticTokenCredential(_secret("LOCAL_PIPELINE_TOKEN"))
        local_deployer = LocalScoringDeployer(settings.scoring_url, _secret("SCORING_ADMIN_KEY"))
        deployer = local_deployer
        scorer = local_deployer.scorer(_secret("SCORING_KEY")) if settings.scoring_url else None
        drift_jobs = LocalDriftJobs(window_storage, Path(local_dir or ".local") / "drift-jobs",
                                    partitions=settings.drift_partitions or 4,
                                    env={"AzureWebJobsStorage": settings.storage_connection})
        pipeline = local_pipeline(settings, pipeline_credential, local_dir or ".local")

    retrain = RetrainDispatch(
        outbox=stores.outbox, runs=stores.runs, pipeline=pipeline, datasets=stores.datasets, audit=stores.audit,
        models=stores.models,
        target=PipelineTarget(experiment=settings.pipeline_experiment, datastore=settings.pipeline_datastore,
                              data_input=settings.pipeline_data_input, budget_s=settings.training_budget_s,
                              evaluation_percent=settings.evaluation_percent,
                              evaluation_rows=settings.evaluation_rows,
                              max_budget_s=settings.max_time_budget_s),
        policy=DispatchPolicy(coalesce_s=settings.coalesce_s, deadline_s=settings.submit_deadline_s))
    deployment = Deployment(models=stores.models, deployer=deployer, scorer=scorer, datasets=stores.datasets,
                            audit=stores.audit)
    return Services(
        settings=settings,
        datasets=stores.datasets,
        audit=stores.audit,
        runs=stores.runs,
        models=stores.models,
        outbox=stores.outbox,
        pipeline=pipeline,
        deployer=deployer,
        scorer=scorer,
        retrain=retrain,
        upload=UploadIntake(limits=UploadLimits(min_rows=settings.min_rows, max_bytes=settings.max_upload_bytes),
                            quarantine=Quarantine(blobs, settings.quarantine_container), retrain=retrain,
                            source=IncomingBlobs(blobs, settings.incoming_container)),
        webhook=WebhookIntake(guard=webhook_guard(settings, tables), retrain=retrain),
        completion=RunCompletion(runs=stores.runs, pipeline=pipeline, deployment=deployment,
                                 policy=PromotionPolicy(margin=settings.promotion_margin,
                                                        floor=settings.promotion_floor),
                                 workspace_id=settings.azureml_workspace_id,
                                 rollouts=rollout_queue(settings, storage_credential)),
        reconcile=ReconcileLimits(min_age_s=settings.reconcile_min_age_s, run_timeout_s=settings.run_timeout_s),
        drift=DriftCheck(policy=drift_policy(settings), retrain=retrain,
                         inference=inference_reader(collected, settings.online_endpoint),
                         reports=report_writer(blobs.get_container_client(settings.reports_container)),
                         offload=drift_jobs),
        drift_on_demand=DriftOnDemand(
            guard=drift_http_guard(settings, tables),
            flight=SingleFlight(storage.ensure_table(tables, settings.webhook_table), "drift-check",
                                lease_s=settings.drift_check_lease_s),
            audit=stores.audit),
        reports=ContainerReports(blobs.get_container_client(settings.reports_container)),
    )


def webhook_guard(settings: Settings, tables: TableServiceClient) -> WebhookGuard:
    """The secret(s) come from app settings (a Key Vault reference in Azure); a missing one is answered 503 by the
    webhook, not a failure of every other trigger."""
    table = storage.ensure_table(tables, settings.webhook_table)
    secrets = tuple(v for v in (secret_value("WEBHOOK_SECRET"), secret_value("WEBHOOK_SECRET_PREVIOUS")) if v)
    return WebhookGuard(secrets=secrets, replay=ReplayGuard(table),
                        rate=RateLimiter(table, settings.webhook_rate_limit, settings.webhook_rate_window_s),
                        idempotency=IdempotencyStore(table, ttl_s=settings.idempotency_ttl_s),
                        rejections=RejectionLog(table, settings.reject_limit))


def drift_http_guard(settings: Settings, tables: TableServiceClient) -> DriftHttpGuard:
    """POST /api/drift-check: the webhook's secret(s), replay guard and refusal log; its own rate counters (scope
    `drift`, so the two routes' limits are independent)."""
    table = storage.ensure_table(tables, settings.webhook_table)
    secrets = tuple(v for v in (secret_value("WEBHOOK_SECRET"), secret_value("WEBHOOK_SECRET_PREVIOUS")) if v)
    rate = RateLimiter(table, settings.drift_http_rate_limit, settings.drift_http_rate_window_s, scope="drift")
    return DriftHttpGuard(secrets=secrets, replay=ReplayGuard(table), rate=rate,
                          rejections=RejectionLog(table, settings.reject_limit))


def drift_policy(settings: Settings) -> DriftPolicy:
    return DriftPolicy(threshold=settings.drift_threshold, share=settings.drift_share, min_rows=settings.drift_min_rows,
                       window_s=settings.drift_window_s, cooldown_s=settings.drift_cooldown_s,
                       critical=settings.drift_critical_columns, thresholds=dict(settings.drift_column_thresholds),
                       inline_max_bytes=settings.drift_inline_max_bytes, job_timeout_s=settings.drift_job_timeout_s)


def inference_reader(container: ContainerClient, endpoint: str) -> InferenceReader:
    """The `model_inputs` rows Azure ML's data collector logged for `endpoint` (shared.adapters.inference_data)."""
    from shared.adapters.inference_data import read_window

    return lambda since, until: read_window(container, endpoint=endpoint, since=since, until=until)


def datastore_collector(ml_client: Any, datastore: str, blobs: BlobServiceClient) -> ContainerClient:
    """The container of the workspace datastore the data collector writes to, read with the app's identity.

    Looked up once per worker process, on first use (`Lazy`), not while building: build() serves every trigger, and
    an upload must neither wait for azure-ai-ml and a Resource Manager call at cold start nor fail when that call
    does. A missing or non-blob datastore fails the drift check that reads it, naming the datastore (`retrain azure
    doctor` checks it before that)."""
    def build() -> ContainerClient:
        from shared.adapters.inference_data import collector_container
        from shared.adapters.workspace_datastore import blob_location

        location = blob_location(ml_client.datastores, datastore)
        logging.getLogger(__name__).info("inference data: datastore %s is %s", datastore, location)
        return collector_container(blobs, location.container, account_url=location.account_url,
                                   credential=azure_credential())
    return Lazy(build)  # type: ignore[return-value]  # stands in for the ContainerClient


def report_writer(container: ContainerClient) -> ReportWriter:
    def write(name: str, html: str) -> str:
        container.upload_blob(name, html.encode("utf-8"), overwrite=True)
        return f"{container.container_name}/{name}"
    return write


def health_checker(settings: Settings) -> HealthChecker:
    """GET /api/health's checks, built from the settings alone (not from services(): storage being down at cold
    start must be a 503 with reasons, not a 500)."""
    import requests

    credential = azure_credential() if (settings.mode == "azure" and settings.storage_account_url) else None
    table = storage.table_service(settings, credential).get_table_client(settings.runs_table)
    return HealthChecker(storage_probe=table_probe(table), pipeline_url=settings.pipeline_endpoint_url,
                         session=requests.Session())


def workspace_client(settings: Settings) -> Lazy:
    """An MLClient on the app's managed identity, built on first use: importing azure-ai-ml takes a second or
    two, which the blob and timer triggers' cold starts need not pay."""
    def build():
        from azure.ai.ml import MLClient

        return MLClient(azure_credential(), settings.azure_subscription_id, settings.azure_resource_group,
                        settings.azureml_workspace_name)
    return Lazy(build)


class Lazy:
    """Stands in for the object `factory()` returns, building it when an attribute is first asked for."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._target = None

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if self._target is None:
            self._target = self._factory()
        return getattr(self._target, name)


def azure_deployer(settings: Settings, ml_client: Any) -> AzureOnlineDeployer:
    """Blue/green on the managed online endpoint."""
    from shared.adapters.azure_online import AzureOnlineDeployer

    return AzureOnlineDeployer(ml_client, settings.online_endpoint, settings.registered_model_name,
                               instance_type=settings.instance_type, instance_count=settings.instance_count,
                               mirror_percent=settings.mirror_percent)


class LazyScorer(Lazy):
    """Reads the endpoint's scoring URI and key on first use, not at cold start (and not when never needed)."""


@lru_cache(maxsize=1)
def services() -> Services:
    return build(get_settings())
