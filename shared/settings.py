"""Typed, frozen settings, read once from the environment (app settings in Azure, local.settings.json locally).

Every name here is an app setting documented in the README. Secrets are not settings: keys and tokens come
from a credential object (Azure AD) or, on the local stack, from `.local/secrets.json` via `local.stack_secrets`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

# The local storage emulator's account name. Its key is NOT Azurite's published development key: the local stack
# and the tests start Azurite with a generated key (AZURITE_ACCOUNTS), kept in `.local/secrets.json`
# (local/stack_secrets.py), so another process on the machine cannot use the well-known key on our data.
AZURITE_ACCOUNT = "devstoreaccount1"


def azurite_connection_string(account: str, key: str, *, host: str = "127.0.0.1", blob: int = 10000,
                              queue: int = 10001, table: int = 10002) -> str:
    """The connection string of an Azurite account; the key is always the caller's (there is no default)."""
    if not account or not key:
        raise ValueError("an Azurite connection string needs the account name and its key")
    return (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
        f"BlobEndpoint=http://{host}:{blob}/{account};"
        f"QueueEndpoint=http://{host}:{queue}/{account};"
        f"TableEndpoint=http://{host}:{table}/{account};"
    )


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"setting {name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"setting {name} must be a number, got {raw!r}") from None


def _thresholds(raw: str) -> dict[str, float]:
    """`col=0.2,other=0.15` -> {col: 0.2, other: 0.15}; a malformed entry names itself."""
    out: dict[str, float] = {}
    for item in (p.strip() for p in raw.split(",") if p.strip()):
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise SettingsError(f"setting DRIFT_COLUMN_THRESHOLDS: {item!r} is not column=number") from None
    return out


@dataclass(frozen=True)
class Settings:
    mode: str = "local"  # RETRAIN_MODE: "local" (embedded stack) or "azure"
    # Storage: a connection string (Azurite locally) or an account URL used with a managed identity.
    storage_connection: str = ""  # AzureWebJobsStorage
    storage_account_url: str = ""  # STORAGE_ACCOUNT_URL (Azure, identity-based; wins over the connection)
    incoming_container: str = "incoming"
    datasets_container: str = "datasets"
    quarantine_container: str = "quarantine"
    inference_container: str = "inference-data"  # INFERENCE_CONTAINER: scoring inputs collected for drift
    audit_table: str = "audit"
    runs_table: str = "runs"
    datasets_table: str = "datasets"
    models_table: str = "models"
    dataset_name: str = "bankmarketing"
    # The published pipeline (Azure ML v1 REST contract).
    pipeline_endpoint_url: str = ""  # PIPELINE_ENDPOINT_URL: the full .../PipelineRuns/PipelineSubmit/{id} URL
    pipeline_kind: str = "published"  # PIPELINE_KIND: "published" (v1 REST) or "batch-endpoint" (v2)
    azureml_workspace_id: str = ""  # AZUREML_WORKSPACE_ID: ARM id: v2 job status, and the topic of run events
    pipeline_batch_deployment: str = ""  # PIPELINE_BATCH_DEPLOYMENT: v2 deployment to invoke (default: endpoint's)
    pipeline_experiment: str = "bankmarketing-retrain"
    pipeline_token_scope: str = "https://management.azure.com/.default"  # noqa: S105 - a scope, not a secret
    pipeline_datastore: str = "workspaceblobstore"
    pipeline_data_input: str = "training_data"
    pipeline_timeout_s: float = 30.0
    pipeline_max_retries: int = 4
    training_budget_s: int = 30
    max_time_budget_s: int = 1800  # MAX_TIME_BUDGET_S: the most a caller's `time_budget_s` may ask for (seconds)
    # Scoring: the local scoring endpoint (Azure: the managed online endpoint's settings below).
    scoring_url: str = ""  # SCORING_URL: base URL of the scoring endpoint
    # Champion / challenger and the completion's safety net.
    promotion_margin: float = 0.005  # PROMOTION_MARGIN: AUC the new model may lose against the live one
    promotion_floor: float = 0.75  # PROMOTION_FLOOR: AUC the new model must reach on the held-out rows
    evaluation_percent: int = 10  # EVALUATION_PERCENT: rows held out of training for that comparison
    reconcile_schedule: str = "0 */5 * * * *"  # RECONCILE_SCHEDULE: the reconcile timer (NCRONTAB)
    reconcile_min_age_s: float = 120.0  # RECONCILE_MIN_AGE_S: runs younger than this are left to their event
    run_timeout_s: float = 21600.0  # RUN_TIMEOUT_S: a run not ended after this is marked failed
    # Azure managed online endpoint (RETRAIN_MODE=azure).
    azure_subscription_id: str = ""  # AZURE_SUBSCRIPTION_ID
    azure_resource_group: str = ""  # AZURE_RESOURCE_GROUP
    azureml_workspace_name: str = ""  # AZUREML_WORKSPACE_NAME
    online_endpoint: str = "bankmarketing-scoring"  # AZUREML_ONLINE_ENDPOINT
    registered_model_name: str = "bankmarketing-classifier"  # AZUREML_MODEL_NAME
    instance_type: str = "Standard_DS3_v2"  # AZUREML_INSTANCE_TYPE
    instance_count: int = 1  # AZUREML_INSTANCE_COUNT
    mirror_percent: int = 0  # AZUREML_MIRROR_PERCENT
    # Validation and drift.
    target_column: str = "y"
    min_rows: int = 500
    max_upload_bytes: int = 200 * 1024 * 1024
    drift_schedule: str = "0 0 * * * *"
    drift_threshold: float = 0.1
    drift_share: float = 0.5
    drift_window_s: float = 7 * 86400.0  # DRIFT_WINDOW_S: how far back collected scoring inputs count
    drift_cooldown_s: float = 6 * 3600.0  # DRIFT_COOLDOWN_S: no drift retrain within this after a retrain
    drift_min_rows: int = 100  # DRIFT_MIN_ROWS: fewer current rows -> "not enough data", never a verdict
    drift_critical_columns: tuple[str, ...] = ()  # DRIFT_CRITICAL_COLUMNS: comma-separated; any drifting -> drift
    drift_column_thresholds: Mapping[str, float] = field(default_factory=dict)  # DRIFT_COLUMN_THRESHOLDS: a=0.2,b=…
    reports_container: str = "drift-reports"  # REPORTS_CONTAINER: the HTML report of every check
    drift_inline_max_bytes: int = 256 * 1024 * 1024  # DRIFT_INLINE_MAX_BYTES: larger windows go to a parallel job
    drift_job_timeout_s: float = 3 * 3600.0  # DRIFT_JOB_TIMEOUT_S: a profiling job not done by then fails the check
    drift_partitions: int = 0  # DRIFT_PARTITIONS: profile steps of that job (0: 8 on Azure ML, 4 locally)
    drift_compute: str = ""  # DRIFT_COMPUTE: Azure ML compute cluster for that job (Azure; empty: always inline)
    # The webhook (POST /api/retrain); its secret is WEBHOOK_SECRET (+ WEBHOOK_SECRET_PREVIOUS while rotating).
    webhook_table: str = "webhook"  # WEBHOOK_TABLE: replay guard, idempotency keys and rate counters
    webhook_rate_limit: int = 30  # WEBHOOK_RATE_LIMIT: requests per caller per window (0: no limit)
    webhook_rate_window_s: float = 60.0  # WEBHOOK_RATE_WINDOW_S
    # Unsigned / badly signed requests to /api/retrain and /api/drift-check: one aggregate row per caller and minute.
    reject_limit: int = 10  # REJECT_LIMIT: rejections per caller per minute before 429 (0: never throttle)
    # POST /api/drift-check: signed like the webhook; its own per-caller rate limit; one check at a time.
    drift_http_rate_limit: int = 6  # DRIFT_HTTP_RATE_LIMIT: signed checks per caller per window (0: no limit)
    drift_http_rate_window_s: float = 3600.0  # DRIFT_HTTP_RATE_WINDOW_S
    drift_check_lease_s: float = 900.0  # DRIFT_CHECK_LEASE_S: a running check's claim expires after this
    idempotency_ttl_s: float = 86400.0  # IDEMPOTENCY_TTL_S: how long an Idempotency-Key is remembered
    # The outbox of retrain requests (coalescing, single flight, retries).
    outbox_table: str = "outbox"  # OUTBOX_TABLE
    outbox_schedule: str = "*/10 * * * * *"  # OUTBOX_SCHEDULE: the dispatcher timer (NCRONTAB)
    coalesce_s: float = 10.0  # COALESCE_S: an upload waits this long for a newer one (0: off)
    submit_deadline_s: float = 3600.0  # SUBMIT_DEADLINE_S: retries of one submission stop after this
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        mode = env.get("RETRAIN_MODE", "local").strip().lower()
        if mode not in ("local", "azure"):
            raise SettingsError(f"setting RETRAIN_MODE must be 'local' or 'azure', got {mode!r}")
        s = cls(
            mode=mode,
            storage_connection=env.get("AzureWebJobsStorage", ""),
            storage_account_url=env.get("STORAGE_ACCOUNT_URL", ""),
            incoming_container=env.get("INCOMING_CONTAINER", "incoming"),
            datasets_container=env.get("DATASETS_CONTAINER", "datasets"),
            quarantine_container=env.get("QUARANTINE_CONTAINER", "quarantine"),
            inference_container=env.get("INFERENCE_CONTAINER", "inference-data"),
            audit_table=env.get("AUDIT_TABLE", "audit"),
            runs_table=env.get("RUNS_TABLE", "runs"),
            datasets_table=env.get("DATASETS_TABLE", "datasets"),
            models_table=env.get("MODELS_TABLE", "models"),
            dataset_name=env.get("DATASET_NAME", "bankmarketing"),
            pipeline_endpoint_url=env.get("PIPELINE_ENDPOINT_URL", ""),
            pipeline_kind=env.get("PIPELINE_KIND", "published").strip().lower(),
            azureml_workspace_id=env.get("AZUREML_WORKSPACE_ID", ""),
            pipeline_batch_deployment=env.get("PIPELINE_BATCH_DEPLOYMENT", ""),
            pipeline_experiment=env.get("PIPELINE_EXPERIMENT_NAME", "bankmarketing-retrain"),
            pipeline_token_scope=env.get("PIPELINE_TOKEN_SCOPE", "https://management.azure.com/.default"),
            pipeline_datastore=env.get("PIPELINE_DATASTORE", "workspaceblobstore"),
            pipeline_data_input=env.get("PIPELINE_DATA_INPUT", "training_data"),
            pipeline_timeout_s=_float(env, "PIPELINE_TIMEOUT_S", 30.0),
            pipeline_max_retries=_int(env, "PIPELINE_MAX_RETRIES", 4),
            training_budget_s=_int(env, "TRAINING_BUDGET_S", 30),
            max_time_budget_s=_int(env, "MAX_TIME_BUDGET_S", 1800),
            scoring_url=env.get("SCORING_URL", ""),
            promotion_margin=_float(env, "PROMOTION_MARGIN", 0.005),
            promotion_floor=_float(env, "PROMOTION_FLOOR", 0.75),
            evaluation_percent=_int(env, "EVALUATION_PERCENT", 10),
            reconcile_schedule=env.get("RECONCILE_SCHEDULE", "0 */5 * * * *"),
            reconcile_min_age_s=_float(env, "RECONCILE_MIN_AGE_S", 120.0),
            run_timeout_s=_float(env, "RUN_TIMEOUT_S", 21600.0),
            azure_subscription_id=env.get("AZURE_SUBSCRIPTION_ID", ""),
            azure_resource_group=env.get("AZURE_RESOURCE_GROUP", ""),
            azureml_workspace_name=env.get("AZUREML_WORKSPACE_NAME", ""),
            online_endpoint=env.get("AZUREML_ONLINE_ENDPOINT", "bankmarketing-scoring"),
            registered_model_name=env.get("AZUREML_MODEL_NAME", "bankmarketing-classifier"),
            instance_type=env.get("AZUREML_INSTANCE_TYPE", "Standard_DS3_v2"),
            instance_count=_int(env, "AZUREML_INSTANCE_COUNT", 1),
            mirror_percent=_int(env, "AZUREML_MIRROR_PERCENT", 0),
            target_column=env.get("TARGET_COLUMN", "y"),
            min_rows=_int(env, "MIN_ROWS", 500),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", 200 * 1024 * 1024),
            drift_schedule=env.get("DRIFT_SCHEDULE", "0 0 * * * *"),
            drift_threshold=_float(env, "DRIFT_THRESHOLD", 0.1),
            drift_share=_float(env, "DRIFT_SHARE", 0.5),
            drift_window_s=_float(env, "DRIFT_WINDOW_S", 7 * 86400.0),
            drift_cooldown_s=_float(env, "DRIFT_COOLDOWN_S", 6 * 3600.0),
            drift_min_rows=_int(env, "DRIFT_MIN_ROWS", 100),
            drift_critical_columns=tuple(c.strip() for c in env.get("DRIFT_CRITICAL_COLUMNS", "").split(",")
                                         if c.strip()),
            drift_column_thresholds=_thresholds(env.get("DRIFT_COLUMN_THRESHOLDS", "")),
            reports_container=env.get("REPORTS_CONTAINER", "drift-reports"),
            drift_inline_max_bytes=_int(env, "DRIFT_INLINE_MAX_BYTES", 256 * 1024 * 1024),
            drift_job_timeout_s=_float(env, "DRIFT_JOB_TIMEOUT_S", 3 * 3600.0),
            drift_partitions=_int(env, "DRIFT_PARTITIONS", 0),
            drift_compute=env.get("DRIFT_COMPUTE", ""),
            webhook_table=env.get("WEBHOOK_TABLE", "webhook"),
            webhook_rate_limit=_int(env, "WEBHOOK_RATE_LIMIT", 30),
            webhook_rate_window_s=_float(env, "WEBHOOK_RATE_WINDOW_S", 60.0),
            reject_limit=_int(env, "REJECT_LIMIT", 10),
            drift_http_rate_limit=_int(env, "DRIFT_HTTP_RATE_LIMIT", 6),
            drift_http_rate_window_s=_float(env, "DRIFT_HTTP_RATE_WINDOW_S", 3600.0),
            drift_check_lease_s=_float(env, "DRIFT_CHECK_LEASE_S", 900.0),
            idempotency_ttl_s=_float(env, "IDEMPOTENCY_TTL_S", 86400.0),
            outbox_table=env.get("OUTBOX_TABLE", "outbox"),
            outbox_schedule=env.get("OUTBOX_SCHEDULE", "*/10 * * * * *"),
            coalesce_s=_float(env, "COALESCE_S", 10.0),
            submit_deadline_s=_float(env, "SUBMIT_DEADLINE_S", 3600.0),
            extra=env,
        )
        if not (s.storage_connection or s.storage_account_url):
            raise SettingsError("set AzureWebJobsStorage (a connection string) or STORAGE_ACCOUNT_URL")
        if s.pipeline_kind not in ("published", "batch-endpoint"):
            raise SettingsError("setting PIPELINE_KIND must be 'published' or 'batch-endpoint', "
                                f"got {s.pipeline_kind!r}")
        if s.pipeline_kind == "batch-endpoint" and not s.azureml_workspace_id:
            raise SettingsError("PIPELINE_KIND=batch-endpoint needs AZUREML_WORKSPACE_ID (the workspace's ARM id)")
        if not 1 <= s.max_time_budget_s <= 86400:
            raise SettingsError(f"setting MAX_TIME_BUDGET_S must be between 1 and 86400, got {s.max_time_budget_s}")
        if not 0 <= s.evaluation_percent <= 50:
            raise SettingsError(f"setting EVALUATION_PERCENT must be between 0 and 50, got {s.evaluation_percent}")
        if s.mode == "azure" and not (s.azure_subscription_id and s.azure_resource_group
                                      and s.azureml_workspace_name):
            raise SettingsError("RETRAIN_MODE=azure needs AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and "
                                "AZUREML_WORKSPACE_NAME (the workspace that hosts the online endpoint)")
        if not 0 <= s.drift_partitions <= 64:
            raise SettingsError(f"setting DRIFT_PARTITIONS must be between 0 and 64, got {s.drift_partitions}")
        if not s.pipeline_endpoint_url:
            raise SettingsError("set PIPELINE_ENDPOINT_URL to the published pipeline's PipelineSubmit URL")
        return s


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (Functions workers reuse them across invocations)."""
    return Settings.from_env()
