"""`retrain azure doctor`: before deploying, check that what RETRAIN_MODE=azure needs is there and usable.

Checks, in order (each: name, status ok | fail | skipped, message, hint to fix):

  settings         Settings.from_env on the environment (or a local.settings.json's "Values"); RETRAIN_MODE=azure.
  credential       a token for https://management.azure.com/.default from DefaultAzureCredential (the app's chain).
  workspace        ARM GET of the Azure ML workspace: 200 found, 403 missing role, 404 wrong name.
  workspace roles  ARM "Permissions - List For Resource" on the workspace: the actions the app uses are allowed.
  pipeline         a GET on PIPELINE_ENDPOINT_URL with a token for the pipeline's scope: reachable, not 401/403.
  scoring endpoint ARM GET of the managed online endpoint: provisioning state, auth mode key.
  storage          list the containers and tables with the app's credential: reachable and authorized.
  storage roles    ARM permissions on the storage account: the blob and table data actions the app uses.
  collected data   ARM GET of the INFERENCE_DATASTORE datastore (an AzureBlob one), then list `modelDataCollector/`
                   in its container: where the drift check reads Azure ML's data collector.

Offline (no login, no network) every check that needs what is missing is `skipped` with the reason; exit codes:
0 every check ok, 1 any failed, 2 none failed but some could not be made.

Contracts (Azure REST reference):
  GET {arm}/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}
      ?api-version=2024-04-01                                              (Workspaces - Get)
  GET {workspace id}/onlineEndpoints/{name}?api-version=2024-04-01         (Online Endpoints - Get:
      properties.provisioningState, properties.authMode Key | AMLToken | AADToken, properties.scoringUri)
  GET {resource id}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01
      -> {"value": [{"actions", "notActions", "dataActions", "notDataActions"}, ...], "nextLink"}
  GET {workspace id}/datastores/{name}?api-version=2024-04-01              (Datastores - Get:
      properties.datastoreType AzureBlob, accountName, containerName, endpoint, protocol)
  every call with `Authorization: Bearer <token>`; the token is never printed, logged or put in a message.

The checks are plain functions over a `Doctor` holding their collaborators (credential with `get_token`, a
requests session, a storage clients factory, the ARM base URL), so tests run them against local HTTP servers.
Modules: checks/ (one per check group), doctor (the collaborators), credential (tokens), roles (actions and
built-in roles), resources (ARM ids), redact (what messages may show), results (status, exit code, output), run.
The permissions checked are those of the identity running the doctor: run it as the Function App's identity
(inside Azure, or with the same service principal) to check that one.

Doctor-only setting: STORAGE_ACCOUNT_RESOURCE_ID, the storage account's ARM id when it is not in
AZURE_RESOURCE_GROUP (default: that group, account name from STORAGE_ACCOUNT_URL).
"""

from tools.azure_doctor.checks.collected_data import check_collected_data
from tools.azure_doctor.checks.credential import check_credential
from tools.azure_doctor.checks.pipeline import check_pipeline
from tools.azure_doctor.checks.roles import check_storage_roles, check_workspace_roles
from tools.azure_doctor.checks.scoring import check_scoring
from tools.azure_doctor.checks.settings import check_settings
from tools.azure_doctor.checks.storage import check_storage
from tools.azure_doctor.checks.workspace import check_workspace
from tools.azure_doctor.credential import (
    DEFAULT_TIMEOUT_S,
    LOGIN_HINT,
    TokenError,
    default_credential,
    summarize_chain,
    token_identity,
)
from tools.azure_doctor.doctor import (
    ARM_URL,
    ML_API_VERSION,
    PERMISSIONS_API_VERSION,
    Doctor,
    Unreachable,
    container_client,
    storage_clients,
)
from tools.azure_doctor.redact import scrub
from tools.azure_doctor.resources import storage_account_id, storage_account_name, workspace_id
from tools.azure_doctor.results import FAIL, OK, SKIPPED, SYMBOLS, Check, Status, exit_code, render, summary, to_json
from tools.azure_doctor.roles import (
    BLOB,
    BUILTIN_ROLES,
    ML,
    STORAGE_NEEDS,
    TABLE,
    Need,
    allowed,
    granting,
    roles_granting,
    workspace_needs,
)
from tools.azure_doctor.run import load_env, main, run_checks

__all__ = [
    "ARM_URL", "BLOB", "BUILTIN_ROLES", "DEFAULT_TIMEOUT_S", "FAIL", "LOGIN_HINT", "ML", "ML_API_VERSION", "OK",
    "PERMISSIONS_API_VERSION", "SKIPPED", "STORAGE_NEEDS", "SYMBOLS", "TABLE", "Check", "Doctor", "Need", "Status",
    "TokenError", "Unreachable", "allowed", "check_collected_data", "check_credential", "check_pipeline",
    "check_scoring", "check_settings", "check_storage", "check_storage_roles", "check_workspace",
    "check_workspace_roles", "container_client", "default_credential",
    "exit_code", "granting", "load_env", "main", "render", "roles_granting", "run_checks", "scrub",
    "storage_account_id", "storage_account_name", "storage_clients", "summarize_chain", "summary", "to_json",
    "token_identity", "workspace_id", "workspace_needs",
]
