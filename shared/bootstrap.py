"""Settings -> adapters -> services. The only place that chooses between local and Azure implementations.

Built once per worker process and reused across invocations (as the Azure Functions samples do with SDK
clients), so connections are pooled and settings are read once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from shared.adapters import storage
from shared.adapters.credentials import StaticTokenCredential, azure_credential
from shared.adapters.dataset_store import DatasetStore
from shared.adapters.pipeline_client import BatchEndpointPipelineClient, PublishedPipelineClient
from shared.adapters.quarantine import Quarantine
from shared.adapters.record_stores import AuditStore, ModelRegistry, RunStore
from shared.adapters.scoring import AzureOnlineDeployer, LocalScoringDeployer, ScoringClient
from shared.services.on_upload import UploadLimits
from shared.services.retrain import PipelineTarget
from shared.settings import Settings, SettingsError, get_settings


@dataclass(frozen=True)
class Stores:
    """The durable records, which need nothing but storage (the CLI reads them too)."""

    datasets: DatasetStore
    audit: AuditStore
    runs: RunStore
    models: ModelRegistry


def build_stores(settings: Settings, credential=None) -> Stores:
    blobs = storage.blob_service(settings, credential)
    tables = storage.table_service(settings, credential)
    return Stores(
        datasets=DatasetStore(blobs, storage.ensure_table(tables, settings.datasets_table),
                              container=settings.datasets_container, name=settings.dataset_name),
        audit=AuditStore(storage.ensure_table(tables, settings.audit_table)),
        runs=RunStore(storage.ensure_table(tables, settings.runs_table)),
        models=ModelRegistry(storage.ensure_table(tables, settings.models_table)),
    )


@dataclass(frozen=True)
class Services:
    settings: Settings
    datasets: DatasetStore
    quarantine: Quarantine
    audit: AuditStore
    runs: RunStore
    models: ModelRegistry
    pipeline: PublishedPipelineClient | BatchEndpointPipelineClient
    deployer: object
    scorer: ScoringClient | None
    target: PipelineTarget
    limits: UploadLimits


def _secret(name: str) -> str:
    """A secret app setting (a Key Vault reference in Azure; `.local/secrets.json` via `retrain up`)."""
    value = os.environ.get(name, "")
    if not value:
        raise SettingsError(f"secret setting {name} is not set")
    return value


def pipeline_client(settings: Settings, credential) -> PublishedPipelineClient | BatchEndpointPipelineClient:
    """v1 published pipeline / pipeline endpoint, or v2 pipeline component behind a batch endpoint."""
    common = {"timeout_s": settings.pipeline_timeout_s, "max_retries": settings.pipeline_max_retries}
    if settings.pipeline_kind == "batch-endpoint":
        return BatchEndpointPipelineClient(settings.pipeline_endpoint_url, credential,
                                           workspace_id=settings.azureml_workspace_id,
                                           deployment=settings.pipeline_batch_deployment or None, **common)
    return PublishedPipelineClient(settings.pipeline_endpoint_url, credential, scope=settings.pipeline_token_scope,
                                   **common)


def build(settings: Settings) -> Services:
    azure = settings.mode == "azure"
    storage_credential = azure_credential() if (azure and settings.storage_account_url) else None
    blobs = storage.blob_service(settings, storage_credential)
    stores = build_stores(settings, storage_credential)
    for container in (settings.incoming_container, settings.datasets_container, settings.quarantine_container):
        storage.ensure_container(blobs, container)

    if azure:
        pipeline_credential = azure_credential()
        deployer: object = AzureOnlineDeployer()
    else:
        pipeline_credential = StaticTokenCredential(_secret("LOCAL_PIPELINE_TOKEN"))
        deployer = LocalScoringDeployer(settings.scoring_url, _secret("SCORING_ADMIN_KEY"))
    scorer = ScoringClient(settings.scoring_url, _secret("SCORING_KEY")) if settings.scoring_url else None

    return Services(
        settings=settings,
        datasets=stores.datasets,
        quarantine=Quarantine(blobs, settings.quarantine_container),
        audit=stores.audit,
        runs=stores.runs,
        models=stores.models,
        pipeline=pipeline_client(settings, pipeline_credential),
        deployer=deployer,
        scorer=scorer,
        target=PipelineTarget(experiment=settings.pipeline_experiment, datastore=settings.pipeline_datastore,
                              data_input=settings.pipeline_data_input, budget_s=settings.training_budget_s),
        limits=UploadLimits(min_rows=settings.min_rows, max_bytes=settings.max_upload_bytes),
    )


@lru_cache(maxsize=1)
def services() -> Services:
    return build(get_settings())
