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

Offline (no login, no network) every check that needs what is missing is `skipped` with the reason; exit codes:
0 every check ok, 1 any failed, 2 none failed but some could not be made.

Contracts (Azure REST reference):
  GET {arm}/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}
      ?api-version=2024-04-01                                              (Workspaces - Get)
  GET {workspace id}/onlineEndpoints/{name}?api-version=2024-04-01         (Online Endpoints - Get:
      properties.provisioningState, properties.authMode Key | AMLToken | AADToken, properties.scoringUri)
  GET {resource id}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01
      -> {"value": [{"actions", "notActions", "dataActions", "notDataActions"}, ...], "nextLink"}
  every call with `Authorization: Bearer <token>`; the token is never printed, logged or put in a message.

The checks are plain functions over a `Doctor` holding their collaborators (credential with `get_token`, a
requests session, a storage clients factory, the ARM base URL), so tests run them against local HTTP servers.
The permissions checked are those of the identity running the doctor: run it as the Function App's identity
(inside Azure, or with the same service principal) to check that one.

Doctor-only setting: STORAGE_ACCOUNT_RESOURCE_ID, the storage account's ARM id when it is not in
AZURE_RESOURCE_GROUP (default: that group, account name from STORAGE_ACCOUNT_URL).
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from shared import redaction
from shared.adapters.pipeline_client import ARM_SCOPE, ML_SCOPE, redact_url
from shared.settings import Settings, SettingsError

ARM_URL = "https://management.azure.com"
ML_API_VERSION = "2024-04-01"  # Microsoft.MachineLearningServices, GA (workspaces, onlineEndpoints)
PERMISSIONS_API_VERSION = "2022-04-01"  # Microsoft.Authorization/permissions
DEFAULT_TIMEOUT_S = 5.0

OK, FAIL, SKIPPED = "ok", "fail", "skipped"
SYMBOLS = {OK: "✓", FAIL: "✗", SKIPPED: "–"}

LOGIN_HINT = ("run `az login` (and `az account set -s <subscription>`), or set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
              "AZURE_CLIENT_SECRET for a service principal; managed identity works only inside Azure")
ML = "Microsoft.MachineLearningServices/workspaces"
BLOB = "Microsoft.Storage/storageAccounts/blobServices"
TABLE = "Microsoft.Storage/storageAccounts/tableServices"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | fail | skipped
    message: str
    hint: str = ""


# ------------------------------------------------------------------------------------------ roles and actions


@dataclass(frozen=True)
class Need:
    purpose: str
    action: str
    data: bool = False  # a data action (dataActions), not a control-plane one


def workspace_needs(settings: Settings) -> list[Need]:
    """The workspace actions the app performs (action names from "Manage access to Azure Machine Learning
    workspaces" and "Authorization on batch endpoints")."""
    needs = [Need("read the workspace", f"{ML}/read")]
    if settings.pipeline_kind == "batch-endpoint":
        needs += [Need("read the training batch endpoint", f"{ML}/batchEndpoints/read"),
                  Need("read its deployments", f"{ML}/batchEndpoints/deployments/read"),
                  Need("start a training job", f"{ML}/experiments/runs/submit/action"),
                  Need("read the job's status", f"{ML}/jobs/read")]
    else:
        needs += [Need("submit a run of the published pipeline", f"{ML}/experiments/runs/submit/action"),
                  Need("read the run's status", f"{ML}/experiments/runs/read")]
    needs += [Need("register the trained model", f"{ML}/models/versions/write"),
              Need("create the endpoint / move its traffic", f"{ML}/onlineEndpoints/write"),
              Need("deploy a model to the endpoint", f"{ML}/onlineEndpoints/deployments/write"),
              Need("remove the previous deployment", f"{ML}/onlineEndpoints/deployments/delete"),
              Need("read the endpoint's scoring key", f"{ML}/onlineEndpoints/listKeys/action")]
    if settings.drift_compute:
        needs.append(Need("submit the drift profiling job", f"{ML}/jobs/write"))
    return needs


STORAGE_NEEDS = [
    Need("list containers", f"{BLOB}/containers/read"),
    Need("create the app's containers", f"{BLOB}/containers/write"),
    Need("read blobs", f"{BLOB}/containers/blobs/read", data=True),
    Need("write blobs", f"{BLOB}/containers/blobs/write", data=True),
    Need("delete moved blobs (quarantine)", f"{BLOB}/containers/blobs/delete", data=True),
    Need("list tables", f"{TABLE}/tables/read"),
    Need("create the app's tables", f"{TABLE}/tables/write"),
    Need("read entities", f"{TABLE}/tables/entities/read", data=True),
    Need("insert entities", f"{TABLE}/tables/entities/add/action", data=True),
    Need("update entities", f"{TABLE}/tables/entities/write", data=True),
    Need("delete entities", f"{TABLE}/tables/entities/delete", data=True),
]

# Built-in role definitions (their `permissions` block), to say which role grants a missing action.
BUILTIN_ROLES: dict[str, dict[str, list[str]]] = {
    "AzureML Data Scientist": {  # f6c7c914-8db3-469d-8ca1-694a8f32e121
        "actions": [f"{ML}/*/read", f"{ML}/*/action", f"{ML}/*/delete", f"{ML}/*/write"],
        "notActions": [f"{ML}/delete", f"{ML}/write", f"{ML}/computes/*/write", f"{ML}/computes/*/delete",
                       f"{ML}/computes/listKeys/action", f"{ML}/listKeys/action", f"{ML}/hubs/write",
                       f"{ML}/hubs/delete", f"{ML}/featurestores/write", f"{ML}/featurestores/delete"],
    },
    "Contributor": {  # b24988ac-6180-42a0-ab88-20f7382dd24c: control plane only, no data actions
        "actions": ["*"],
        "notActions": ["Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
                       "Microsoft.Authorization/elevateAccess/Action"],
    },
    "Reader": {"actions": ["*/read"]},  # acdd72a7-3385-48ef-bd42-f606fba81ae7
    "Storage Blob Data Owner": {  # b7e6dc6d-f1e8-4753-8033-0f276bb0955b
        "actions": [f"{BLOB}/containers/*", f"{BLOB}/generateUserDelegationKey/action"],
        "dataActions": [f"{BLOB}/containers/blobs/*"],
    },
    "Storage Blob Data Contributor": {  # ba92f5b4-2d11-453d-a403-e96b0029c9fe
        "actions": [f"{BLOB}/containers/delete", f"{BLOB}/containers/read", f"{BLOB}/containers/write",
                    f"{BLOB}/generateUserDelegationKey/action"],
        "dataActions": [f"{BLOB}/containers/blobs/delete", f"{BLOB}/containers/blobs/read",
                        f"{BLOB}/containers/blobs/write", f"{BLOB}/containers/blobs/move/action",
                        f"{BLOB}/containers/blobs/add/action"],
    },
    "Storage Blob Data Reader": {  # 2a2b9908-6ea1-4ae2-8e65-a410df84e7d1
        "actions": [f"{BLOB}/containers/read", f"{BLOB}/generateUserDelegationKey/action"],
        "dataActions": [f"{BLOB}/containers/blobs/read"],
    },
    "Storage Table Data Contributor": {  # 0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3
        "actions": [f"{TABLE}/tables/read", f"{TABLE}/tables/write", f"{TABLE}/tables/delete"],
        "dataActions": [f"{TABLE}/tables/entities/read", f"{TABLE}/tables/entities/write",
                        f"{TABLE}/tables/entities/delete", f"{TABLE}/tables/entities/add/action",
                        f"{TABLE}/tables/entities/update/action"],
    },
    "Storage Table Data Reader": {  # 76199698-9eea-4c19-bc75-cec21354c6b6
        "actions": [f"{TABLE}/tables/read"],
        "dataActions": [f"{TABLE}/tables/entities/read"],
    },
}


def _pattern(pattern: str) -> re.Pattern[str]:
    """An RBAC action pattern: case-insensitive, `*` matches anything; `a/*/write` also matches `a/write` (the
    built-in roles rely on it: AzureML Data Scientist lists `workspaces/*/write` and excludes `workspaces/write`)."""
    regex = re.escape(pattern).replace(re.escape("/*/"), "(?:/|/.*/)").replace(re.escape("*"), ".*")
    return re.compile(f"^{regex}$", re.IGNORECASE)


def _matches(action: str, patterns: list[str] | None) -> bool:
    return any(_pattern(p).match(action) for p in patterns or ())


def allowed(need: Need, permissions: list[Mapping[str, Any]]) -> bool:
    """Allowed when one permission block (one role assignment) allows it and does not exclude it."""
    key, not_key = ("dataActions", "notDataActions") if need.data else ("actions", "notActions")
    return any(_matches(need.action, p.get(key)) and not _matches(need.action, p.get(not_key)) for p in permissions)


def roles_granting(need: Need) -> list[str]:
    return [name for name, block in BUILTIN_ROLES.items() if allowed(need, [block])]


def granting(missing: list[Need]) -> str:
    """Built-in roles granting some of the missing actions, with how many; a role granting a strict subset of
    what another grants (a Reader next to its Contributor) is left out."""
    grants = {role: frozenset(n for n in missing if allowed(n, [block])) for role, block in BUILTIN_ROLES.items()}
    useful = {role: got for role, got in grants.items() if got and not any(got < other for other in grants.values())}
    return ", ".join(f"{role} ({len(got)} of {len(missing)})" for role, got in
                     sorted(useful.items(), key=lambda item: (-len(item[1]), item[0]))) or "none"


# ------------------------------------------------------------------------------------------ redaction


_URL = re.compile(r"https?://[^\s\"'<>)]+")


def scrub(text: str, secrets: set[str] | None = None) -> str:
    """Messages may quote service errors: no token, key, signature or URL query string gets through
    (shared.redaction's rules, with `***` as the mask, plus the tokens this doctor was handed)."""
    text = redaction.redact(text, "***", extra=secrets or ())
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------------------------ collaborators


class Unreachable(Exception):
    """No HTTP answer (DNS, refused, timeout): the reason, short."""


def _why_unreachable(exc: Exception, timeout_s: float) -> str:
    text = str(exc)
    if isinstance(exc, requests.Timeout) or "timed out" in text.lower():
        return f"no answer within {timeout_s:g}s"
    if "NameResolution" in text or "Name or service not known" in text or "getaddrinfo" in text \
            or "Failed to resolve" in text or "nodename nor servname" in text:
        return "DNS lookup failed"
    if "refused" in text.lower():
        return "connection refused"
    return f"cannot connect ({type(exc).__name__})"


def _arm_error(response: requests.Response) -> str:
    try:
        error = response.json().get("error") or {}
        code, message = error.get("code"), error.get("message")
    except (ValueError, AttributeError):
        code, message = None, response.text[:200]
    return ": ".join(part for part in (code, _clip(message or "", 240)) if part)


class _TokenError(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def _get_token(credential: Any, scope: str, timeout_s: float) -> Any:
    """get_token with a wall-clock bound: a daemon thread, so a credential stuck on a network call (an IMDS
    endpoint that never answers) cannot hold the doctor or its exit."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["token"] = credential.get_token(scope)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=run, name="doctor-get-token", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise _TokenError(SKIPPED, f"the credential did not answer within {timeout_s:g}s (a managed identity "
                                   "endpoint that is not there, or no network)")
    if "error" in box:
        raise _classify(box["error"])
    return box["token"]


_CRED_LINE = re.compile(r"^\s*(\w+Credential):\s*(.*)$")
_KEY_CREDENTIALS = ("EnvironmentCredential", "WorkloadIdentityCredential", "ManagedIdentityCredential",
                    "AzureCliCredential")


def summarize_chain(message: str) -> str:
    """DefaultAzureCredential's long 'Attempted credentials' text as one line, the useful ones first."""
    found: dict[str, str] = {}
    for line in message.splitlines():
        m = _CRED_LINE.match(line)
        if m:
            reason = m.group(2).replace(f"{m.group(1)} authentication unavailable.", "").strip() or "unavailable"
            found[m.group(1)] = _clip(reason.split(". ")[0].rstrip("."), 90)
    if not found:
        return _clip(message, 300)
    shown = [f"{name}: {found[name]}" for name in _KEY_CREDENTIALS if name in found]
    rest = len(found) - len(shown)
    return "; ".join(shown) + (f"; {rest} more unavailable" if rest else "")


def _classify(exc: BaseException) -> _TokenError:
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
    from azure.identity import CredentialUnavailableError

    text = str(exc)
    none = f"no credential: DefaultAzureCredential found none ({summarize_chain(text)})"
    if isinstance(exc, CredentialUnavailableError):
        return _TokenError(SKIPPED, none)
    if "AADSTS" in text:  # Entra ID answered and refused: a wrong secret, tenant or client id
        code = re.search(r"AADSTS\d+", text)
        return _TokenError(FAIL, f"Microsoft Entra ID refused the credential ({code.group(0) if code else 'AADSTS'}): "
                                 f"{_clip(summarize_chain(text), 240)}")
    if isinstance(exc, ServiceRequestError) or any(w in text for w in ("resolve", "Connection", "timed out")):
        # a configured credential (service principal, managed identity endpoint) that cannot reach its service
        return _TokenError(SKIPPED, f"cannot reach the token service (offline?): {_clip(summarize_chain(text), 240)}")
    if "failed to retrieve a token from the included credentials" in text and "unavailable" in text:
        return _TokenError(SKIPPED, none)
    if isinstance(exc, ClientAuthenticationError):
        return _TokenError(FAIL, f"authentication failed: {_clip(summarize_chain(text), 300)}")
    return _TokenError(FAIL, f"getting a token failed: {type(exc).__name__}: {_clip(text, 240)}")


def token_identity(token: str) -> str:
    """Who the token is for (user name or app id, object id), from its unverified claims; never the token."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return "an identity"
    who = claims.get("upn") or claims.get("unique_name") or (f"app {claims['appid']}" if claims.get("appid") else "")
    oid = claims.get("oid")
    return " ".join(part for part in (who or "an identity", f"(object id {oid})" if oid else "") if part)


def default_credential(timeout_s: float = DEFAULT_TIMEOUT_S):
    """The app's chain (credentials.azure_credential): environment service principal, workload identity,
    managed identity (its IMDS probe gives up after 1 s outside Azure), Azure CLI, …; CLI calls bounded too."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True,
                                  process_timeout=max(1, int(timeout_s)))


def storage_clients(settings: Settings, credential: Any, timeout_s: float = DEFAULT_TIMEOUT_S):
    """Blob and table service clients as shared.adapters.storage builds them, without retries and with short
    timeouts, so an unreachable account answers in seconds."""
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient

    common = {"retry_total": 0, "connection_timeout": timeout_s, "read_timeout": timeout_s}
    if settings.storage_account_url:
        table_url = settings.storage_account_url.replace(".blob.", ".table.")
        return (BlobServiceClient(settings.storage_account_url, credential=credential, **common),
                TableServiceClient(table_url, credential=credential, **common))
    return (BlobServiceClient.from_connection_string(settings.storage_connection, **common),
            TableServiceClient.from_connection_string(settings.storage_connection, **common))


@dataclass
class Doctor:
    """What the checks need from outside; every field can be replaced (tests: local HTTP servers)."""

    credential: Any = None  # has get_token(scope); None: built lazily (default_credential)
    session: requests.Session = field(default_factory=requests.Session)
    storage_factory: Callable[..., Any] = storage_clients  # (settings, credential, timeout_s) -> (blob, table)
    arm_url: str = ARM_URL
    timeout_s: float = DEFAULT_TIMEOUT_S
    settings: Settings | None = None
    _tokens: dict[str, Any] = field(default_factory=dict, repr=False)
    secrets: set[str] = field(default_factory=set, repr=False)  # tokens handed out: scrubbed from every message
    arm_reachable: bool | None = None  # None: not tried yet

    def token(self, scope: str) -> str:
        """A bearer token (cached per scope); raises _TokenError (status skipped or fail)."""
        if scope not in self._tokens:
            try:
                if self.credential is None:
                    self.credential = default_credential(self.timeout_s)
                token = _get_token(self.credential, scope, self.timeout_s).token
                self.secrets.add(token)
                redaction.register(token)  # also masked in log lines, not only in the checks' messages
                self._tokens[scope] = token
            except _TokenError as exc:
                self._tokens[scope] = exc
        value = self._tokens[scope]
        if isinstance(value, _TokenError):
            raise value
        return value

    def has_token(self) -> bool:
        try:
            self.token(ARM_SCOPE)
            return True
        except _TokenError:
            return False

    def get(self, url: str, *, scope: str, params: Mapping[str, str] | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(scope)}", "Accept": "application/json"}
        try:
            return self.session.get(url, params=params, headers=headers, timeout=self.timeout_s,
                                    allow_redirects=False)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Unreachable(_why_unreachable(exc, self.timeout_s)) from None

    def arm(self, path: str, api_version: str) -> requests.Response:
        url = f"{self.arm_url.rstrip('/')}/{path.lstrip('/')}"
        try:
            response = self.get(url, scope=ARM_SCOPE, params={"api-version": api_version})
        except Unreachable:
            if self.arm_reachable is None:
                self.arm_reachable = False
            raise
        self.arm_reachable = True
        return response

    @property
    def arm_host(self) -> str:
        return urlsplit(self.arm_url).netloc or self.arm_url


def workspace_id(settings: Settings) -> str:
    return (f"/subscriptions/{settings.azure_subscription_id}/resourceGroups/{settings.azure_resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{settings.azureml_workspace_name}")


def storage_account_name(settings: Settings) -> str:
    if settings.storage_account_url:
        parts = urlsplit(settings.storage_account_url)
        host = parts.hostname or ""
        if host in ("127.0.0.1", "localhost", "::1") or host.replace(".", "").isdigit():
            return parts.path.strip("/").split("/")[0]  # Azurite style: http://host:port/account
        return host.split(".")[0]
    found = re.search(r"(?i)AccountName=([^;]+)", settings.storage_connection)
    if found:
        return found.group(1)
    return "devstoreaccount1" if "UseDevelopmentStorage=true" in settings.storage_connection else ""


def storage_account_id(settings: Settings) -> str:
    explicit = (settings.extra or {}).get("STORAGE_ACCOUNT_RESOURCE_ID", "").strip()
    if explicit:
        return "/" + explicit.strip("/")
    return (f"/subscriptions/{settings.azure_subscription_id}/resourceGroups/{settings.azure_resource_group}"
            f"/providers/Microsoft.Storage/storageAccounts/{storage_account_name(settings)}")


# ------------------------------------------------------------------------------------------ the checks


def check_settings(env: Mapping[str, str]) -> tuple[Check, Settings | None]:
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        return Check("settings", FAIL, str(exc), "set it in the Function App's application settings (locally: "
                                                 "local.settings.json \"Values\", or pass --settings FILE)"), None
    if settings.mode != "azure":
        return Check("settings", FAIL, f"RETRAIN_MODE is {settings.mode!r}: the app would run the embedded local "
                                       "stack, not Azure ML",
                     "set RETRAIN_MODE=azure (with AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, "
                     "AZUREML_WORKSPACE_NAME)"), settings
    storage = (f"account {storage_account_name(settings)} via STORAGE_ACCOUNT_URL (Azure AD)"
               if settings.storage_account_url else
               f"account {storage_account_name(settings) or '?'} via AzureWebJobsStorage (shared key)")
    return Check("settings", OK, f"workspace {settings.azureml_workspace_name} in {settings.azure_resource_group}; "
                                 f"pipeline {settings.pipeline_kind}; endpoint {settings.online_endpoint}; "
                                 f"storage {storage}"), settings


def check_credential(doctor: Doctor) -> Check:
    try:
        token = doctor.token(ARM_SCOPE)
    except _TokenError as exc:
        return Check("credential", exc.status, str(exc), LOGIN_HINT)
    return Check("credential", OK, f"token for {ARM_SCOPE} obtained for {token_identity(token)}; the checks below "
                                   "run as this identity")


def _needs_token(name: str, doctor: Doctor, *, arm: bool = True) -> Check | None:
    """The Check to report instead when there is no ARM token (or, for ARM calls, ARM was unreachable)."""
    if not doctor.has_token():
        return Check(name, SKIPPED, "not checked: no credential (see the credential check)",
                     "fix the credential check first")
    if arm and doctor.arm_reachable is False:
        return Check(name, SKIPPED, f"not checked: {doctor.arm_host} cannot be reached (offline?)",
                     "run it where Azure Resource Manager is reachable")
    return None


def _unreachable(name: str, doctor: Doctor, host: str, why: str) -> Check:
    if doctor.arm_reachable:  # Azure answers, this host does not: a wrong URL, a firewall, a private endpoint
        return Check(name, FAIL, f"{host}: {why}", "check the URL, DNS and network rules (private endpoints "
                                                   "resolve only inside their virtual network)")
    return Check(name, SKIPPED, f"not checked: {host}: {why} (offline?)",
                 "run it where Azure is reachable")


def check_workspace(settings: Settings, doctor: Doctor) -> Check:
    name = "workspace"
    if (skip := _needs_token(name, doctor)) is not None:
        return skip
    ws = settings.azureml_workspace_name
    try:
        response = doctor.arm(workspace_id(settings), ML_API_VERSION)
    except Unreachable as exc:
        return Check(name, SKIPPED, f"not checked: {doctor.arm_host}: {exc} (offline?)",
                     "run it where Azure Resource Manager is reachable")
    status = response.status_code
    if status == 200:
        body = response.json()
        location = body.get("location") or "?"
        state = (body.get("properties") or {}).get("provisioningState")
        if state and state != "Succeeded":
            return Check(name, FAIL, f"workspace {ws} is in state {state}", "wait for it, or look at it in the portal")
        return Check(name, OK, f"workspace {ws} found ({location})")
    detail = _arm_error(response)
    if status == 404:
        return Check(name, FAIL, f"workspace {ws} not found in resource group {settings.azure_resource_group} of "
                                 f"subscription {settings.azure_subscription_id} ({detail or 404})",
                     "check AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and AZUREML_WORKSPACE_NAME "
                     "(`az ml workspace list -o table`)")
    if status == 403:
        return Check(name, FAIL, f"the identity may not read workspace {ws} (403 {detail})",
                     "assign 'AzureML Data Scientist' on the workspace: az role assignment create --assignee "
                     f"<object id> --role 'AzureML Data Scientist' --scope {workspace_id(settings)}")
    if status == 401:
        return Check(name, FAIL, f"Azure Resource Manager rejected the token (401 {detail})",
                     "log in to the tenant that owns the subscription (az login --tenant …, AZURE_TENANT_ID)")
    return Check(name, FAIL, f"unexpected answer {status} ({detail})", "retry; if it persists see the Azure status")


def _permissions(doctor: Doctor, scope: str) -> list[dict[str, Any]]:
    """All permission blocks of the caller at a scope (following nextLink on the ARM host only)."""
    response = doctor.arm(f"{scope}/providers/Microsoft.Authorization/permissions", PERMISSIONS_API_VERSION)
    blocks: list[dict[str, Any]] = []
    for _page in range(10):
        if response.status_code != 200:
            raise _PermissionsError(response.status_code, _arm_error(response))
        body = response.json()
        blocks.extend(body.get("value") or [])
        next_link = body.get("nextLink")
        if not next_link or not next_link.startswith(doctor.arm_url.rstrip("/") + "/"):
            break
        response = doctor.get(next_link, scope=ARM_SCOPE)
    return blocks


class _PermissionsError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(f"{status} {detail}".strip())
        self.status = status


def _roles_check(name: str, doctor: Doctor, scope: str, needs: list[Need], what: str, roles_hint: str) -> Check:
    if (skip := _needs_token(name, doctor)) is not None:
        return skip
    try:
        blocks = _permissions(doctor, scope)
    except Unreachable as exc:
        return Check(name, SKIPPED, f"not checked: {doctor.arm_host}: {exc} (offline?)",
                     "run it where Azure Resource Manager is reachable")
    except _PermissionsError as exc:
        return Check(name, FAIL, f"could not list the identity's permissions on the {what} ({exc})",
                     f"check the scope {scope}; the identity needs a role there (e.g. {roles_hint})")
    missing = [need for need in needs if not allowed(need, blocks)]
    if not missing:
        return Check(name, OK, f"all {len(needs)} actions the app uses on the {what} are allowed")
    prefix = os.path.commonprefix([n.action for n in needs]).rsplit("/", 1)[0] + "/"
    listed = "; ".join(f"{n.purpose} ({n.action[len(prefix):]}{', data' if n.data else ''})" for n in missing)
    return Check(name, FAIL, f"{len(missing)} of {len(needs)} actions not allowed on the {what} ({prefix}…): "
                             f"{listed}",
                 f"assign {roles_hint} at {scope} (`az role assignment create --assignee <object id> --role <role> "
                 f"--scope <scope>`); built-in roles granting them: {granting(missing)}")


def check_workspace_roles(settings: Settings, doctor: Doctor) -> Check:
    return _roles_check("workspace roles", doctor, workspace_id(settings), workspace_needs(settings), "workspace",
                        "'AzureML Data Scientist' (it grants every action here; Contributor also does)")


def check_storage_roles(settings: Settings, doctor: Doctor) -> Check:
    name = "storage roles"
    if not settings.storage_account_url:
        return Check(name, OK, "storage is reached with AzureWebJobsStorage (a shared key): no data roles needed")
    return _roles_check(name, doctor, storage_account_id(settings), STORAGE_NEEDS, "storage account",
                        "'Storage Blob Data Contributor' (or Owner) and 'Storage Table Data Contributor' — Owner "
                        "and Contributor alone give no data access")


def _pipeline_mismatch(settings: Settings) -> str | None:
    """Offline consistency: the pipeline must belong to the configured workspace."""
    url = settings.pipeline_endpoint_url
    if settings.pipeline_kind == "batch-endpoint":
        if settings.azureml_workspace_id.strip("/").lower() != workspace_id(settings).strip("/").lower():
            return (f"AZUREML_WORKSPACE_ID ({settings.azureml_workspace_id}) is not the workspace "
                    f"{workspace_id(settings)}")
        return None
    found = re.search(r"(?i)/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/"
                      r"Microsoft\.MachineLearningServices/workspaces/([^/]+)/", urlsplit(url).path)
    if found:
        sub, rg, ws = found.groups()
        if (sub.lower(), rg.lower(), ws.lower()) != (settings.azure_subscription_id.lower(),
                                                     settings.azure_resource_group.lower(),
                                                     settings.azureml_workspace_name.lower()):
            return (f"PIPELINE_ENDPOINT_URL is for workspace {ws} (resource group {rg}), the settings name "
                    f"{settings.azureml_workspace_name} ({settings.azure_resource_group})")
    return None


def check_pipeline(settings: Settings, doctor: Doctor) -> Check:
    name = "pipeline endpoint"
    url = settings.pipeline_endpoint_url
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return Check(name, FAIL, f"{shown} is not https: the token would travel in clear",
                     "set PIPELINE_ENDPOINT_URL to the https URL Azure ML shows")
    if (mismatch := _pipeline_mismatch(settings)) is not None:
        return Check(name, FAIL, mismatch, "point PIPELINE_ENDPOINT_URL (and AZUREML_WORKSPACE_ID) at the "
                                           "configured workspace, or fix AZUREML_WORKSPACE_NAME")
    if (skip := _needs_token(name, doctor, arm=False)) is not None:
        return skip
    scope = ML_SCOPE if settings.pipeline_kind == "batch-endpoint" else settings.pipeline_token_scope
    try:
        response = doctor.get(url, scope=scope)
    except _TokenError as exc:
        return Check(name, exc.status, f"no token for the pipeline scope {scope}: {exc}",
                     "PIPELINE_TOKEN_SCOPE must be a scope the identity can get (published pipelines: "
                     f"{ARM_SCOPE})")
    except Unreachable as exc:
        return _unreachable(name, doctor, parts.netloc, str(exc))
    status = response.status_code
    if status == 401:
        return Check(name, FAIL, f"{parts.netloc} rejected the token for PIPELINE_ENDPOINT_URL (401)",
                     f"the token's scope must match the endpoint: published pipelines take {ARM_SCOPE} "
                     f"(PIPELINE_TOKEN_SCOPE), batch endpoints {ML_SCOPE}")
    if status == 403:
        return Check(name, FAIL, f"{parts.netloc}: the identity may not use this pipeline (403)",
                     "assign 'AzureML Data Scientist' on the workspace")
    if status >= 500:
        return Check(name, FAIL, f"{shown}: service error {status}", "retry later; see the Azure status page")
    return Check(name, OK, f"{parts.netloc} reachable and the token accepted (GET answered {status}; "
                           f"{settings.pipeline_kind} pipeline)")


def check_scoring(settings: Settings, doctor: Doctor) -> Check:
    name = "scoring endpoint"
    if (skip := _needs_token(name, doctor)) is not None:
        return skip
    endpoint = settings.online_endpoint
    try:
        response = doctor.arm(f"{workspace_id(settings)}/onlineEndpoints/{endpoint}", ML_API_VERSION)
    except Unreachable as exc:
        return Check(name, SKIPPED, f"not checked: {doctor.arm_host}: {exc} (offline?)",
                     "run it where Azure Resource Manager is reachable")
    status = response.status_code
    if status == 404:
        return Check(name, OK, f"endpoint {endpoint} does not exist yet: the first deploy creates it "
                               "(auth mode key)")
    if status in (401, 403):
        return Check(name, FAIL, f"endpoint {endpoint} could not be read ({status} {_arm_error(response)})",
                     "assign 'AzureML Data Scientist' on the workspace")
    if status != 200:
        return Check(name, FAIL, f"endpoint {endpoint}: unexpected answer {status} ({_arm_error(response)})",
                     "retry; if it persists look at the endpoint in Azure ML studio")
    props = response.json().get("properties") or {}
    state, auth = props.get("provisioningState") or "?", props.get("authMode") or "?"
    traffic = ", ".join(f"{k} {v}%" for k, v in (props.get("traffic") or {}).items()) or "no traffic yet"
    problems, hints = [], []
    if state != "Succeeded":
        problems.append(f"provisioning state {state}")
        hints.append("wait for the running operation, or fix the failed endpoint (Azure ML studio → Endpoints)")
    if str(auth).lower() != "key":
        problems.append(f"auth mode {auth}, the scoring client needs Key")
        hints.append(f"recreate the endpoint with auth_mode key (az ml online-endpoint create -n {endpoint} "
                     "--auth-mode key)")
    if problems:
        return Check(name, FAIL, f"endpoint {endpoint}: " + "; ".join(problems), "; ".join(hints))
    return Check(name, OK, f"endpoint {endpoint}: Succeeded, auth mode Key, {traffic}")


def check_storage(settings: Settings, doctor: Doctor) -> Check:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    name = "storage"
    aad = bool(settings.storage_account_url)
    account = storage_account_name(settings) or "?"
    if aad and (skip := _needs_token(name, doctor, arm=False)) is not None:
        return skip
    containers = [settings.incoming_container, settings.datasets_container, settings.quarantine_container,
                  settings.inference_container, settings.reports_container]
    tables = [settings.audit_table, settings.runs_table, settings.datasets_table, settings.models_table,
              settings.webhook_table, settings.outbox_table]
    role_hint = ("assign 'Storage Blob Data Contributor' and 'Storage Table Data Contributor' on the storage "
                 "account (Owner/Contributor give no data access); role assignments take up to 30 min to apply"
                 if aad else "AzureWebJobsStorage's account key is wrong or was rotated: copy the current one")
    try:
        blob, table = doctor.storage_factory(settings, doctor.credential if aad else None, doctor.timeout_s)
        have_containers = {c.name for c in blob.list_containers()}
        have_tables = {t.name for t in table.list_tables()}
    except (ServiceRequestError, Unreachable) as exc:
        return _unreachable(name, doctor, f"storage account {account}", _why_unreachable(exc, doctor.timeout_s))
    except ClientAuthenticationError as exc:
        status = getattr(exc, "status_code", None)
        return Check(name, FAIL, f"storage account {account} refused the credential ({status or ''} "
                                 f"{_clip(getattr(exc, 'error_code', None) or exc.message, 160)})", role_hint)
    except HttpResponseError as exc:
        code = getattr(exc, "error_code", None) or ""
        if exc.status_code == 403:
            return Check(name, FAIL, f"storage account {account}: not authorized (403 {code})", role_hint)
        return Check(name, FAIL, f"storage account {account}: {exc.status_code} {code}",
                     "check STORAGE_ACCOUNT_URL / AzureWebJobsStorage")
    missing_c = [c for c in containers if c not in have_containers]
    missing_t = [t for t in tables if t not in have_tables]
    created = "; ".join(part for part in (
        f"containers {', '.join(missing_c)}" if missing_c else "",
        f"tables {', '.join(missing_t)}" if missing_t else "") if part)
    return Check(name, OK, f"storage account {account} reachable and authorized ({'Azure AD' if aad else 'shared key'})"
                           + (f"; created at first start: {created}" if created else
                              "; every container and table the app uses exists"))


# ------------------------------------------------------------------------------------------ running, output


def run_checks(env: Mapping[str, str], doctor: Doctor | None = None) -> list[Check]:
    doctor = doctor or Doctor()
    settings_check, settings = check_settings(env)
    checks = [settings_check]
    names = ("credential", "workspace", "workspace roles", "pipeline endpoint", "scoring endpoint", "storage",
             "storage roles")
    if settings_check.status != OK or settings is None:
        checks += [Check(n, SKIPPED, "not checked: the settings are not valid", "fix the settings check first")
                   for n in names]
        return [_scrubbed(c, doctor) for c in checks]
    doctor.settings = settings
    checks.append(check_credential(doctor))
    for check in (check_workspace, check_workspace_roles, check_pipeline, check_scoring, check_storage,
                  check_storage_roles):
        try:
            checks.append(check(settings, doctor))
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            label = check.__name__.removeprefix("check_").replace("_", " ")
            checks.append(Check(label, FAIL, f"the check itself failed: {type(exc).__name__}: {_clip(str(exc))}",
                                "report it with this output"))
    return [_scrubbed(c, doctor) for c in checks]


def _scrubbed(check: Check, doctor: Doctor) -> Check:
    return Check(check.name, check.status, scrub(check.message, doctor.secrets), scrub(check.hint, doctor.secrets))


def exit_code(checks: list[Check]) -> int:
    if any(c.status == FAIL for c in checks):
        return 1
    return 2 if any(c.status == SKIPPED for c in checks) else 0


def to_json(checks: list[Check]) -> dict[str, Any]:
    return {"ok": all(c.status == OK for c in checks), "checks": [asdict(c) for c in checks]}


def summary(checks: list[Check]) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in (OK, FAIL, SKIPPED)}
    text = f"{counts[OK]} ok, {counts[FAIL]} failed, {counts[SKIPPED]} not checked"
    if counts[FAIL]:
        return text + ": fix the failed checks before deploying"
    if counts[SKIPPED]:
        return text + ": run it again with a login and network to make the rest"
    return text + ": ready to deploy"


def render(checks: list[Check], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    styles = {OK: "green", FAIL: "red", SKIPPED: "yellow"}
    table = Table(title="retrain azure doctor", show_lines=True)
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("result", overflow="fold")
    table.add_column("to fix", overflow="fold")
    for c in checks:
        style = styles[c.status]
        table.add_row(f"[{style}]{SYMBOLS[c.status]}[/]", f"[{style}]{c.name}[/]", c.message, c.hint)
    console.print(table)
    console.print(summary(checks), highlight=False)


def load_env(settings_file: str | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment, with a local.settings.json-style file's "Values" on top when given."""
    env = dict(os.environ if base is None else base)
    if settings_file:
        data = json.loads(Path(settings_file).read_text(encoding="utf-8"))
        values = data.get("Values") if isinstance(data, dict) else None
        if not isinstance(values, dict):
            raise ValueError(f"{settings_file} has no \"Values\" object")
        env.update({str(k): "" if v is None else str(v) for k, v in values.items()})
    return env


def main(*, json_output: bool = False, settings_file: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
         doctor: Doctor | None = None, env: Mapping[str, str] | None = None, out=None) -> int:
    import logging
    import sys

    # DefaultAzureCredential logs its whole "Attempted credentials" text as a warning; the credential check
    # reports it, once and shorter.
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    out = out or sys.stdout
    try:
        environment = load_env(settings_file, env)
    except (OSError, ValueError) as exc:
        print(f"retrain azure doctor: cannot read settings file: {exc}", file=sys.stderr)
        return 2
    doctor = doctor or Doctor(timeout_s=timeout_s)
    started = time.monotonic()
    checks = run_checks(environment, doctor)
    if json_output:
        print(json.dumps(to_json(checks), indent=2), file=out)
    else:
        from rich.console import Console

        render(checks, Console(file=out, width=max(140, Console().width)))
        print(f"({time.monotonic() - started:.1f}s)", file=out)
    return exit_code(checks)
