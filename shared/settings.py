"""Typed, frozen settings, read once from the environment (app settings in Azure, local.settings.json locally).

Each setting is declared once, as a `Settings` field made with `setting()`: the field name and annotation (its
type), the app setting (environment variable) it is read from, its default and its meaning. `from_env` reads by
that declaration, and docs/settings.md is generated from it (`python -m shared.settings --markdown >
docs/settings.md`; tests/unit/test_settings.py keeps the page equal to the declaration).

Secrets are not settings: keys and tokens come from a credential object (Azure AD) or, on the local stack, from
`.local/secrets.json` via `local.stack_secrets`. The app settings that hold them, and the few read outside
`Settings`, are declared below in `SECRETS` and `OTHER_SETTINGS` (names and meanings only) so the page lists them
too; tests/unit/test_infra.py checks every environment read of the deployed code is one of these.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from enum import Enum
from functools import lru_cache
from typing import Any, NamedTuple

# The local storage emulator's account name. Its key is NOT Azurite's published development key: the local stack
# and the tests start Azurite with a generated key (AZURITE_ACCOUNTS), kept in `.local/secrets.json`
# (local/stack_secrets.py), so another process on the machine cannot use the well-known key on our data.
AZURITE_ACCOUNT = "devstoreaccount1"

GENERATOR = "python -m shared.settings --markdown > docs/settings.md"


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


# ---------------------------------------------------------------------------------------------------------------
# Parsers, one per field type: (setting name, raw value or None when unset, default) -> value.
# ---------------------------------------------------------------------------------------------------------------

def _text(name: str, raw: str | None, default: str) -> str:
    """Unset -> the default; set (even to "") -> the value as written."""
    return default if raw is None else raw


def _int(name: str, raw: str | None, default: int) -> int:
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"setting {name} must be an integer, got {raw!r}") from None


def _float(name: str, raw: str | None, default: float) -> float:
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"setting {name} must be a number, got {raw!r}") from None


def _names(name: str, raw: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """`a, b,,c` -> ("a", "b", "c"); unset or empty -> ()."""
    return tuple(c.strip() for c in (raw or "").split(",") if c.strip())


def _thresholds(name: str, raw: str | None, default: Mapping[str, float]) -> dict[str, float]:
    """`col=0.2,other=0.15` -> {col: 0.2, other: 0.15}; a malformed entry names itself."""
    out: dict[str, float] = {}
    for item in (p.strip() for p in (raw or "").split(",") if p.strip()):
        column, _, value = item.partition("=")
        try:
            out[column.strip()] = float(value)
        except ValueError:
            raise SettingsError(f"setting {name}: {item!r} is not column=number") from None
    return out


# By field annotation (a string: this module uses postponed annotations). The second item is the type the docs show.
_PARSERS: dict[str, tuple[Callable[[str, str | None, Any], Any], str]] = {
    "str": (_text, "text"),
    "int": (_int, "integer"),
    "float": (_float, "number"),
    "tuple[str, ...]": (_names, "comma-separated names"),
    "Mapping[str, float]": (_thresholds, "`name=number,…`"),
}


def setting(env: str, default: Any, doc: str, *, choices: tuple[str, ...] = (),
            bounds: tuple[int, int] | None = None) -> Any:
    """Declare a `Settings` field with its app setting `env`, its default and its meaning (markdown, one line).

    `choices`: the value is stripped, lower-cased and must be one of them; `bounds`: inclusive range of a number.
    """
    metadata = {"env": env, "doc": doc, "choices": choices, "bounds": bounds}
    if isinstance(default, Mapping):
        if default:
            raise TypeError(f"{env}: a mapping setting's default must be empty")
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    mode: str = setting("RETRAIN_MODE", "local", "`local` (the embedded stack) or `azure`", choices=("local", "azure"))
    # Storage: a connection string (Azurite locally) or an account URL used with a managed identity.
    storage_connection: str = setting(
        "AzureWebJobsStorage", "", "storage connection string (Azurite's locally); the blob trigger's connection. "
        "In Azure the app uses its identity instead (`AzureWebJobsStorage__credential`, `__*ServiceUri`)")
    storage_account_url: str = setting(
        "STORAGE_ACCOUNT_URL", "", "Azure: the blob account URL, used with the managed identity; wins over the "
        "connection string")
    incoming_container: str = setting(
        "INCOMING_CONTAINER", "incoming", "container the blob trigger watches (`%INCOMING_CONTAINER%/{name}`)")
    datasets_container: str = setting(
        "DATASETS_CONTAINER", "datasets", "immutable dataset versions: `bankmarketing/v{N}/data.csv`")
    quarantine_container: str = setting(
        "QUARANTINE_CONTAINER", "quarantine", "rejected uploads, each with `<name>.reason.json`")
    # Azure ML's data collector writes `modelDataCollector/{endpoint}/{deployment}/model_inputs/...` to the
    # workspace blob store (https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data).
    inference_container: str = setting(
        "INFERENCE_CONTAINER", "inference-data", "the container the data collector writes the scoring endpoint's "
        "`modelDataCollector/` to, read for drift (Azure: the workspace blob store's `azureml-blobstore-<id>`)")
    inference_account_url: str = setting(
        "INFERENCE_ACCOUNT_URL", "", "Azure: blob endpoint of the storage account holding INFERENCE_CONTAINER "
        "(the workspace's); empty: the app's own account, as locally")
    inference_datastore: str = setting(
        "INFERENCE_DATASTORE", "", "Azure: the Azure ML datastore the data collector writes to (`workspaceblobstore` "
        "unless a deployment's `data_collector` names another); the app looks up its account and container in the "
        "workspace once and reads them with its identity (Storage Blob Data Reader). Wins over INFERENCE_CONTAINER "
        "and INFERENCE_ACCOUNT_URL; empty: those two, as locally")
    audit_table: str = setting("AUDIT_TABLE", "audit", "Table storage table of the audit trail")
    runs_table: str = setting("RUNS_TABLE", "runs", "Table storage table of the pipeline runs")
    datasets_table: str = setting("DATASETS_TABLE", "datasets", "Table storage table of the dataset versions")
    models_table: str = setting("MODELS_TABLE", "models", "Table storage table of the model registry")
    dataset_name: str = setting("DATASET_NAME", "bankmarketing", "dataset name used in paths and the registry")
    # The training pipeline (Azure ML v1 REST contract, or a v2 batch endpoint).
    pipeline_endpoint_url: str = setting(
        "PIPELINE_ENDPOINT_URL", "", "required. v1: the `…/PipelineRuns/PipelineSubmit/{id}` (or "
        "`…/PipelineEndpointSubmit/Id/{id}`) URL; v2: the batch endpoint's invocation URL")
    pipeline_kind: str = setting(
        "PIPELINE_KIND", "batch-endpoint", "`batch-endpoint` (v2: the pipeline component behind a batch endpoint) or "
        "`published` (v1 REST: PipelineSubmit / PipelineEndpointSubmit; the v1 SDK reached end of support on 30 June "
        "2026, kept for pipelines already published)", choices=("batch-endpoint", "published"))
    azureml_workspace_id: str = setting(
        "AZUREML_WORKSPACE_ID", "", "the workspace's ARM resource id: v2 job status, and the `topic` every run "
        "event must carry (compared case-insensitively; other topics are ignored and audited as `foreign_topic`; "
        "unset: every run event is refused and only the reconcile timer finishes runs). Infra and `retrain up` set it")
    azureml_arm_url: str = setting(
        "AZUREML_ARM_URL", "https://management.azure.com", "v2: the Resource Manager endpoint of the workspace's jobs "
        "API (job status, the lookup before a resubmission); another cloud's endpoint, or the local stand-in")
    pipeline_batch_deployment: str = setting(
        "PIPELINE_BATCH_DEPLOYMENT", "", "v2 only: the deployment to invoke (empty: the endpoint's default)")
    pipeline_experiment: str = setting(
        "PIPELINE_EXPERIMENT_NAME", "bankmarketing-retrain", "`ExperimentName` sent with each submission")
    pipeline_token_scope: str = setting(
        "PIPELINE_TOKEN_SCOPE", "https://management.azure.com/.default", "v1: scope of the Azure AD token "
        "(v2 uses `https://ml.azure.com/.default` to invoke)")
    pipeline_datastore: str = setting(
        "PIPELINE_DATASTORE", "workspaceblobstore", "`DataStoreName` in `DataPathAssignments`: the Azure ML "
        "datastore over `DATASETS_CONTAINER`")
    pipeline_data_input: str = setting("PIPELINE_DATA_INPUT", "training_data", "the pipeline's data input name")
    pipeline_timeout_s: float = setting("PIPELINE_TIMEOUT_S", 30.0, "HTTP timeout per pipeline call (seconds)")
    pipeline_max_retries: int = setting(
        "PIPELINE_MAX_RETRIES", 4, "retries (exponential backoff, `Retry-After` honoured) for 429, 5xx and refused "
        "connections")
    training_budget_s: int = setting(
        "TRAINING_BUDGET_S", 30, "training budget passed to the pipeline (`time_budget_s` parameter, seconds)")
    max_time_budget_s: int = setting(
        "MAX_TIME_BUDGET_S", 1800, "the most a webhook caller's `parameters.time_budget_s` may ask for (seconds); "
        "more is a `400`", bounds=(1, 86400))
    # Scoring: the local scoring endpoint (Azure: the managed online endpoint's settings below).
    scoring_url: str = setting(
        "SCORING_URL", "", "local stack: base URL of the scoring endpoint (in Azure the scoring URI is read "
        "through the workspace)")
    # Champion / challenger and the completion's safety net.
    promotion_margin: float = setting(
        "PROMOTION_MARGIN", 0.005, "held-out AUC the new model may lose against the live one and still be deployed")
    promotion_floor: float = setting(
        "PROMOTION_FLOOR", 0.75, "held-out AUC a new model must reach to be deployed at all")
    evaluation_percent: int = setting(
        "EVALUATION_PERCENT", 10, "rows held out of training (by row hash) to compare the new model with the "
        "live one (percent)", bounds=(0, 50))
    evaluation_rows: str = setting(
        "EVALUATION_ROWS", "auto", "which rows are held out: `hash` (the same rows in every version), `newest` (the "
        "last rows in file order; the model is then refitted on all rows) or `auto` (newest when the file is in "
        "time order, see docs/training.md#time-order)", choices=("auto", "hash", "newest"))
    reconcile_schedule: str = setting(
        "RECONCILE_SCHEDULE", "0 */5 * * * *", "NCRONTAB of the reconcile timer (the local stack uses every 2 "
        "minutes)")
    reconcile_min_age_s: float = setting(
        "RECONCILE_MIN_AGE_S", 120.0, "runs younger than this (seconds) are left to their completion event, and "
        "uploads younger than this to their blob trigger delivery")
    run_timeout_s: float = setting(
        "RUN_TIMEOUT_S", 21600.0, "a run that has not ended after this (seconds) is recorded as failed")
    # Azure managed online endpoint (RETRAIN_MODE=azure).
    azure_subscription_id: str = setting(
        "AZURE_SUBSCRIPTION_ID", "", "Azure: subscription of the workspace hosting the online endpoint")
    azure_resource_group: str = setting(
        "AZURE_RESOURCE_GROUP", "", "Azure: resource group of that workspace")
    azureml_workspace_name: str = setting("AZUREML_WORKSPACE_NAME", "", "Azure: that workspace's name")
    online_endpoint: str = setting(
        "AZUREML_ONLINE_ENDPOINT", "bankmarketing-scoring", "Azure: the managed online endpoint (key auth) the "
        "models are deployed to")
    registered_model_name: str = setting(
        "AZUREML_MODEL_NAME", "bankmarketing-classifier", "Azure: registered model name")
    instance_type: str = setting("AZUREML_INSTANCE_TYPE", "Standard_DS3_v2", "Azure: VM size of each deployment")
    instance_count: int = setting("AZUREML_INSTANCE_COUNT", 1, "Azure: instances of each deployment")
    mirror_percent: int = setting(
        "AZUREML_MIRROR_PERCENT", 0, "Azure: share of live traffic mirrored to a new deployment before the switch "
        "(0–50)")
    # Validation and drift.
    min_rows: int = setting("MIN_ROWS", 500, "smallest accepted upload (rows)")
    max_upload_bytes: int = setting("MAX_UPLOAD_BYTES", 200 * 1024 * 1024, "largest accepted upload (bytes)")
    drift_schedule: str = setting(
        "DRIFT_SCHEDULE", "0 0 * * * *", "6-field NCRONTAB of the drift timer (hourly)")
    drift_threshold: float = setting(
        "DRIFT_THRESHOLD", 0.1, "per-column drift threshold (normalized Wasserstein / Jensen–Shannon)")
    drift_share: float = setting(
        "DRIFT_SHARE", 0.5, "share of drifted columns that makes the dataset drifted")
    drift_window_s: float = setting(
        "DRIFT_WINDOW_S", 7 * 86400.0, "how far back collected scoring inputs count (seconds; 7 days)")
    drift_cooldown_s: float = setting(
        "DRIFT_COOLDOWN_S", 6 * 3600.0, "no drift-triggered retrain within this (seconds) after any retrain")
    drift_min_rows: int = setting(
        "DRIFT_MIN_ROWS", 100, "fewer current rows → \"not enough data\", never a verdict (noise alone nears 0.1 "
        "below ~2,000 rows)")
    drift_critical_columns: tuple[str, ...] = setting(
        "DRIFT_CRITICAL_COLUMNS", (), "columns whose drift alone makes the data drifted")
    drift_column_thresholds: Mapping[str, float] = setting(
        "DRIFT_COLUMN_THRESHOLDS", {}, "per-column thresholds, `euribor3m=0.05,duration=0.2`")
    reports_container: str = setting(
        "REPORTS_CONTAINER", "drift-reports", "the HTML report of every drift check")
    drift_inline_max_bytes: int = setting(
        "DRIFT_INLINE_MAX_BYTES", 256 * 1024 * 1024, "a larger drift window (bytes) is handed to the parallel "
        "profiling job")
    drift_job_timeout_s: float = setting(
        "DRIFT_JOB_TIMEOUT_S", 3 * 3600.0, "a profiling job not done after this (seconds) fails its check")
    drift_partitions: int = setting(
        "DRIFT_PARTITIONS", 0, "profile steps of that job (0: 8 on Azure ML, 4 locally)", bounds=(0, 64))
    drift_compute: str = setting(
        "DRIFT_COMPUTE", "", "Azure: the Azure ML compute cluster for that job; empty: every window is profiled "
        "inline")
    # The webhook (POST /api/retrain); its secret is WEBHOOK_SECRET (+ WEBHOOK_SECRET_PREVIOUS while rotating).
    webhook_table: str = setting(
        "WEBHOOK_TABLE", "webhook", "replay guard, `Idempotency-Key`s and rate counters")
    webhook_rate_limit: int = setting(
        "WEBHOOK_RATE_LIMIT", 30, "webhook requests per caller per window (0: no limit)")
    webhook_rate_window_s: float = setting(
        "WEBHOOK_RATE_WINDOW_S", 60.0, "the window of `WEBHOOK_RATE_LIMIT` (seconds)")
    # Unsigned / badly signed requests to /api/retrain and /api/drift-check: one aggregate row per caller and minute.
    reject_limit: int = setting(
        "REJECT_LIMIT", 10, "refused unauthenticated requests per caller per minute before `429` on the signed "
        "routes (0: never throttle)")
    # POST /api/drift-check: signed like the webhook; its own per-caller rate limit; one check at a time.
    drift_http_rate_limit: int = setting(
        "DRIFT_HTTP_RATE_LIMIT", 6, "signed `POST /api/drift-check` requests per caller per window (0: no limit)")
    drift_http_rate_window_s: float = setting(
        "DRIFT_HTTP_RATE_WINDOW_S", 3600.0, "the window of `DRIFT_HTTP_RATE_LIMIT` (seconds)")
    drift_check_lease_s: float = setting(
        "DRIFT_CHECK_LEASE_S", 900.0, "a running drift check's single-flight lease (seconds); a holder that died "
        "frees it after this")
    idempotency_ttl_s: float = setting(
        "IDEMPOTENCY_TTL_S", 86400.0, "how long an `Idempotency-Key` is remembered (seconds)")
    # The outbox of retrain requests (coalescing, single flight, retries).
    outbox_table: str = setting("OUTBOX_TABLE", "outbox", "the retrain requests and the one pending slot")
    outbox_schedule: str = setting(
        "OUTBOX_SCHEDULE", "*/10 * * * * *", "NCRONTAB of the outbox timer (the local stack uses every 2 s)")
    coalesce_s: float = setting(
        "COALESCE_S", 10.0, "an upload's retrain waits this long (seconds) for a newer upload (latest wins; 0: off)")
    submit_deadline_s: float = setting(
        "SUBMIT_DEADLINE_S", 3600.0, "how long (seconds) one request's submission is retried before it ends "
        "`failed`")
    # The rollout queue: run_completed answers Event Grid at once; function_app/rollout_queue.py deploys.
    rollout_queue: str = setting(
        "ROLLOUT_QUEUE", "rollouts", "the Storage queue (on AzureWebJobsStorage) of finished runs waiting for their "
        "registration and rollout; exhausted messages land in `<name>-poison`")
    # Not a setting: the whole environment from_env read, for the few readers of other names (see OTHER_SETTINGS).
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, check: bool = True) -> Settings:
        """Every declared setting from `env` (default: the environment). `check=False` skips the checks across
        settings (RULES): they are the app's start-up checks, and the operator tools (tools/cli) read a few
        settings by the same declaration without being the app (no pipeline URL, say)."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in declared_fields():
            name = f.metadata["env"]
            value = _PARSERS[str(f.type)][0](name, env.get(name), default_of(f))
            if f.metadata["choices"]:
                value = value.strip().lower()
                if value not in f.metadata["choices"]:
                    allowed = " or ".join(repr(c) for c in f.metadata["choices"])
                    raise SettingsError(f"setting {name} must be {allowed}, got {value!r}")
            if f.metadata["bounds"] and not f.metadata["bounds"][0] <= value <= f.metadata["bounds"][1]:
                low, high = f.metadata["bounds"]
                raise SettingsError(f"setting {name} must be between {low} and {high}, got {value}")
            values[f.name] = value
        s = cls(**values, extra=env)
        for rule in RULES if check else ():
            if not rule.holds(s):
                raise SettingsError(rule.message)
        return s


class Rule(NamedTuple):
    """A check across settings, made once they are all read; its message is the error."""

    holds: Callable[[Settings], bool]
    message: str


RULES = (
    Rule(lambda s: bool(s.storage_connection or s.storage_account_url),
         "set AzureWebJobsStorage (a connection string) or STORAGE_ACCOUNT_URL"),
    Rule(lambda s: s.pipeline_kind != "batch-endpoint" or bool(s.azureml_workspace_id),
         "PIPELINE_KIND=batch-endpoint (the default) needs AZUREML_WORKSPACE_ID (the workspace's ARM id); "
         "PIPELINE_KIND=published for a v1 published pipeline"),
    Rule(lambda s: s.mode != "azure" or bool(s.azure_subscription_id and s.azure_resource_group
                                             and s.azureml_workspace_name),
         "RETRAIN_MODE=azure needs AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and AZUREML_WORKSPACE_NAME "
         "(the workspace that hosts the online endpoint)"),
    Rule(lambda s: bool(s.pipeline_endpoint_url),
         "set PIPELINE_ENDPOINT_URL to the batch endpoint's invocation URL (v2) or the published pipeline's "
         "PipelineSubmit URL (PIPELINE_KIND=published)"),
)


def declared_fields() -> tuple[Field, ...]:
    """The `Settings` fields that are app settings (all but `extra`), in declaration order."""
    return tuple(f for f in fields(Settings) if "env" in f.metadata)


def default_of(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (Functions workers reuse them across invocations)."""
    return Settings.from_env()


# ---------------------------------------------------------------------------------------------------------------
# App settings read outside `Settings`: declared here (name and meaning) so the settings page lists every one.
# ---------------------------------------------------------------------------------------------------------------

class Reader(Enum):
    """Who reads an app setting that is not a `Settings` field."""

    APP = "the app"  # shared/ or function_app/, outside Settings (tests/unit/test_infra.py finds each read)
    PLATFORM = "the Functions host / Python worker"  # in Azure the platform; locally our host mirrors it
    LOCAL_HOST = "the local Functions host"  # local/functions_host only


@dataclass(frozen=True)
class AppSetting:
    name: str
    meaning: str
    default: str = ""  # as the docs show it; "" for none
    reader: Reader = Reader.APP


# Secrets: never `Settings` fields and never printed. Their values are masked in every log (shared.redaction
# registers them; tests/unit/test_infra.py checks that it names each one).
SECRETS = (
    # shared/bootstrap.py webhook_guard and drift_http_guard
    AppSetting("WEBHOOK_SECRET", "HMAC key of `X-Retrain-Signature` on `POST /api/retrain` and "
               "`POST /api/drift-check`; a Key Vault reference in Azure, `.local/secrets.json` locally"),
    AppSetting("WEBHOOK_SECRET_PREVIOUS", "the previous HMAC key, still accepted while the key is rotated"),
    # shared/bootstrap.py _secret, RETRAIN_MODE=local only
    AppSetting("LOCAL_PIPELINE_TOKEN", "local stack only: bearer token of the local pipeline endpoint"),
    AppSetting("SCORING_KEY", "local stack only: key of the local scoring server (in Azure the endpoint key is "
               "read through the workspace)"),
    AppSetting("SCORING_ADMIN_KEY", "local stack only: key of the local scoring server's deploy route"),
    # shared/telemetry/setup.py configure_from_env
    AppSetting("APPLICATIONINSIGHTS_CONNECTION_STRING", "send traces, logs and metrics to Application Insights "
               "(unset: telemetry stays in the process)"),
)

OTHER_SETTINGS = (
    # function_app/blob_upload.py, at indexing
    AppSetting("BLOB_TRIGGER_SOURCE", "the blob trigger's source, read when the worker indexes the app "
               "(`LogsAndContainerScan`: polling; Flex Consumption supports only `EventGrid`)", "`EventGrid`"),
    # shared/telemetry/setup.py configure_from_env
    AppSetting("OTEL_SERVICE_NAME", "service name on every span, log and metric", "`bankmarketing-retrain`"),
    # shared/bootstrap.py build; local/ too
    AppSetting("RETRAIN_LOCAL_DIR", "local stack: its state folder (secrets, keys, drift jobs)", "`.local`"),
    # the worker (local/functions_host/loader.py mirrors it), and the two below (invoker.py, ncrontab.py)
    AppSetting("PYTHON_SCRIPT_FILE_NAME", "the worker's entry module (infra and `retrain up` set `main.py`)",
               "`function_app.py`", Reader.PLATFORM),
    AppSetting("PYTHON_THREADPOOL_THREAD_COUNT", "threads that run synchronous functions",
               "`min(32, CPUs + 4)`", Reader.PLATFORM),
    AppSetting("WEBSITE_TIME_ZONE", "time zone of the timer schedules (an IANA name)", "UTC", Reader.PLATFORM),
    # local/functions_host/host.py
    AppSetting("BLOB_TRIGGER_POLL_S", "blob container polling interval (seconds)", "`1.0`", Reader.LOCAL_HOST),
)


# ---------------------------------------------------------------------------------------------------------------
# docs/settings.md
# ---------------------------------------------------------------------------------------------------------------

_INTRO = """\
All settings are app settings: environment variables, set by infra/ in Azure (`infra/main.bicep`) and by
`local.settings.json` `Values` locally (see `local.settings.sample.json`); `retrain up` sets them for the local
host itself. `Settings.from_env` reads them once per process; a malformed value stops start-up with an error that
names the setting. An unset setting takes its default; a text setting set to an empty value is empty."""


def _shown(value: Any) -> str:
    if isinstance(value, str | tuple | Mapping) and not value:
        return "—"
    if isinstance(value, float):
        return f"`{int(value)}`" if value.is_integer() else f"`{value!r}`"
    return f"`{value}`"


def _type_of(f: Field) -> str:
    shown = _PARSERS[str(f.type)][1]
    if f.metadata["choices"]:
        return " or ".join(f"`{c}`" for c in f.metadata["choices"])
    if f.metadata["bounds"]:
        low, high = f.metadata["bounds"]
        return f"{shown}, {low}–{high}"
    return shown


def reference_markdown() -> str:
    """docs/settings.md: every declared setting, the checks across them, the secrets and the other app settings."""
    lines = [
        "# Settings",
        "",
        f"*Generated from the declaration in `shared/settings.py` by `{GENERATOR}`; do not edit by hand "
        "(tests/unit/test_settings.py fails until the page equals the declaration).*",
        "",
        _INTRO,
        "",
        "## Settings (`shared.settings.Settings`)",
        "",
        "| setting | field | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| `{f.metadata['env']}` | `{f.name}` | {_type_of(f)} | {_shown(default_of(f))} | {f.metadata['doc']} |"
              for f in declared_fields()]
    lines += ["", "## Checked at start-up, across settings", "",
              "A configuration that breaks one of these stops start-up with the message shown.", ""]
    lines += [f"- {rule.message}" for rule in RULES]
    lines += ["", "## Secrets", "",
              "Read where they are used, never kept in `Settings`, masked in every log and error.", "",
              "| setting | meaning |", "|---|---|"]
    lines += [f"| `{s.name}` | {s.meaning} |" for s in SECRETS]
    lines += ["", "## Other app settings", "", "| setting | read by | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{s.name}` | {s.reader.value} | {s.default or '—'} | {s.meaning} |" for s in OTHER_SETTINGS]
    return "\n".join(lines) + "\n"


def _check_declaration() -> None:
    """Fail at import, not at the first read, when a field's type has no parser or a setting is declared twice."""
    names = [f.metadata["env"] for f in declared_fields()] + [s.name for s in SECRETS + OTHER_SETTINGS]
    twice = sorted({n for n in names if names.count(n) > 1})
    unparsed = [f.name for f in declared_fields() if str(f.type) not in _PARSERS]
    if twice or unparsed:
        raise TypeError(f"settings declared twice: {twice}; fields without a parser: {unparsed}")


_check_declaration()


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit(f"usage: {GENERATOR}")
    sys.stdout.write(reference_markdown())
