"""`retrain azure doctor` over HTTP: a local server (pytest-httpserver) stands in for Azure Resource Manager and
the pipeline endpoint with the documented URL shapes, api-versions and JSON bodies; storage is a real Azurite.
The Azure control plane is unreachable from here, so this is the one allowed stand-in; every request is checked
for its exact path, api-version and `Authorization: Bearer` header. Last, the real CLI run offline (no login)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken

from local.processes import free_port
from local.stack_secrets import new_storage_key
from shared.settings import AZURITE_ACCOUNT, Settings, azurite_connection_string
from tools import azure_doctor as doc

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).parent / "retrain"
RETRAIN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "tools.cli"]

SUB, RG, WS, ENDPOINT = "00000000-1111-2222-3333-444444444444", "retrain-rg", "retrain-ws", "bankmarketing-scoring"
WS_PATH = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
SA_PATH = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/retrainsa"
SUBMIT_PATH = f"/pipelines/v1.0{WS_PATH}/PipelineRuns/PipelineSubmit/6f1c7d2e-0000-4000-8000-000000000001"
PERMS = "/providers/Microsoft.Authorization/permissions"
ML_API = {"api-version": "2024-04-01"}
PERM_API = {"api-version": "2022-04-01"}


def jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


ARM_TOKEN = jwt({"upn": "ops@contoso.com", "oid": "9f0e0000-0000-4000-8000-00000000abcd", "aud": "arm"})
ML_TOKEN = jwt({"upn": "ops@contoso.com", "oid": "9f0e0000-0000-4000-8000-00000000abcd", "aud": "ml"})
BEARER = {"Authorization": f"Bearer {ARM_TOKEN}"}


class ScopedCredential:
    """A token per scope, as Microsoft Entra ID hands them out; records what was asked."""

    def __init__(self):
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.scopes.extend(scopes)
        token = ML_TOKEN if scopes[0] == "https://ml.azure.com/.default" else ARM_TOKEN
        return AccessToken(token, int(time.time()) + 3600)


ROLE_DATA_SCIENTIST = doc.BUILTIN_ROLES["AzureML Data Scientist"]
ROLE_BLOB = doc.BUILTIN_ROLES["Storage Blob Data Contributor"]
ROLE_TABLE = doc.BUILTIN_ROLES["Storage Table Data Contributor"]


def permissions(*roles: dict) -> dict:
    """Permissions - List For Resource: one block per role assignment, all four keys present."""
    return {"value": [{"actions": r.get("actions", []), "notActions": r.get("notActions", []),
                       "dataActions": r.get("dataActions", []), "notDataActions": r.get("notDataActions", [])}
                      for r in roles]}


def workspace_body(state: str = "Succeeded") -> dict:
    return {"id": WS_PATH, "name": WS, "type": "Microsoft.MachineLearningServices/workspaces",
            "location": "westeurope", "properties": {"provisioningState": state, "friendlyName": WS}}


def endpoint_body(state: str = "Succeeded", auth: str = "Key") -> dict:
    return {"id": f"{WS_PATH}/onlineEndpoints/{ENDPOINT}", "name": ENDPOINT,
            "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints", "location": "westeurope",
            "identity": {"type": "SystemAssigned"}, "kind": "Managed",
            "properties": {"authMode": auth, "provisioningState": state, "traffic": {"blue": 100},
                           "scoringUri": f"https://{ENDPOINT}.westeurope.inference.ml.azure.com/score"}}


def arm_error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


@pytest.fixture()
def env(httpserver):
    return {"RETRAIN_MODE": "azure", "STORAGE_ACCOUNT_URL": "https://retrainsa.blob.core.windows.net",
            "PIPELINE_KIND": "published",  # v1 here; the batch-endpoint tests say so
            "PIPELINE_ENDPOINT_URL": httpserver.url_for(SUBMIT_PATH), "AZURE_SUBSCRIPTION_ID": SUB,
            "AZURE_RESOURCE_GROUP": RG, "AZUREML_WORKSPACE_NAME": WS, "AZUREML_ONLINE_ENDPOINT": ENDPOINT}


def azurite_factory(connection: str):
    """Storage clients for a real Azurite: the account the app would use, reached with a shared key here."""
    def factory(settings: Settings, credential, timeout_s: float):
        return doc.storage_clients(Settings(storage_connection=connection), None, timeout_s)
    return factory


def doctor_for(httpserver, connection: str, credential=None, **kwargs) -> doc.Doctor:
    return doc.Doctor(credential=credential or ScopedCredential(), arm_url=httpserver.url_for("/").rstrip("/"),
                      storage_factory=azurite_factory(connection), timeout_s=5, **kwargs)


def by_name(checks):
    return {c.name: c for c in checks}


def test_everything_in_place_is_all_ok_with_the_documented_calls(httpserver, env, azurite):
    httpserver.expect_oneshot_request(WS_PATH, "GET", query_string=ML_API, headers=BEARER) \
        .respond_with_json(workspace_body())
    httpserver.expect_oneshot_request(WS_PATH + PERMS, "GET", query_string=PERM_API, headers=BEARER) \
        .respond_with_json(permissions(ROLE_DATA_SCIENTIST))
    httpserver.expect_oneshot_request(SUBMIT_PATH, "GET", headers=BEARER).respond_with_data("", status=405)
    httpserver.expect_oneshot_request(f"{WS_PATH}/onlineEndpoints/{ENDPOINT}", "GET", query_string=ML_API,
                                      headers=BEARER).respond_with_json(endpoint_body())
    httpserver.expect_oneshot_request(SA_PATH + PERMS, "GET", query_string=PERM_API, headers=BEARER) \
        .respond_with_json(permissions(ROLE_BLOB, ROLE_TABLE))
    credential = ScopedCredential()

    checks = doc.run_checks(env, doctor_for(httpserver, azurite, credential))

    httpserver.check_assertions()
    assert len(httpserver.log) == 5
    for request, _ in httpserver.log:
        assert request.headers["Authorization"] == f"Bearer {ARM_TOKEN}"
        assert request.headers["Accept"] == "application/json"
    results = by_name(checks)
    assert {c.name: c.status for c in checks} == dict.fromkeys(results, "ok"), checks
    assert "ops@contoso.com" in results["credential"].message
    assert "westeurope" in results["workspace"].message
    assert "actions the app uses on the workspace are allowed" in results["workspace roles"].message
    assert "GET answered 405" in results["pipeline endpoint"].message
    assert "Succeeded, auth mode Key, blue 100%" in results["scoring endpoint"].message
    assert "reachable and authorized" in results["storage"].message
    assert doc.exit_code(checks) == 0
    assert set(credential.scopes) == {"https://management.azure.com/.default"}
    assert ARM_TOKEN not in json.dumps(doc.to_json(checks))


def test_each_missing_piece_fails_with_its_own_message_and_fix(httpserver, env):
    httpserver.expect_request(WS_PATH, query_string=ML_API).respond_with_json(arm_error(
        "AuthorizationFailed", "The client 'ops@contoso.com' with object id '9f0e' does not have authorization to "
        f"perform action 'Microsoft.MachineLearningServices/workspaces/read' over scope '{WS_PATH}'"), status=403)
    httpserver.expect_request(WS_PATH + PERMS, query_string=PERM_API).respond_with_json(
        permissions(doc.BUILTIN_ROLES["Reader"]))
    httpserver.expect_request(SUBMIT_PATH).respond_with_json({"error": {"message": "Unauthorized"}}, status=401)
    httpserver.expect_request(f"{WS_PATH}/onlineEndpoints/{ENDPOINT}", query_string=ML_API) \
        .respond_with_json(endpoint_body(state="Failed", auth="AMLToken"))
    httpserver.expect_request(SA_PATH + PERMS, query_string=PERM_API).respond_with_json(
        permissions(doc.BUILTIN_ROLES["Contributor"]))
    nobody = azurite_connection_string(AZURITE_ACCOUNT, new_storage_key(), blob=free_port(), table=free_port())

    checks = by_name(doc.run_checks(env, doctor_for(httpserver, nobody)))

    ws = checks["workspace"]
    assert ws.status == "fail" and "may not read workspace" in ws.message and "AuthorizationFailed" in ws.message
    assert "AzureML Data Scientist" in ws.hint and WS_PATH in ws.hint
    roles = checks["workspace roles"]
    assert roles.status == "fail" and "not allowed on the workspace" in roles.message
    assert "experiments/runs/submit/action" in roles.message and "onlineEndpoints/deployments/write" in roles.message
    assert "6 of 8 actions" in roles.message and "/read " not in roles.message  # Reader may read, nothing more
    assert "AzureML Data Scientist" in roles.hint
    pipeline = checks["pipeline endpoint"]
    assert pipeline.status == "fail" and "401" in pipeline.message and "PIPELINE_TOKEN_SCOPE" in pipeline.hint
    scoring = checks["scoring endpoint"]
    assert scoring.status == "fail" and "provisioning state Failed" in scoring.message
    assert "auth mode AMLToken" in scoring.message and "--auth-mode key" in scoring.hint
    storage_roles = checks["storage roles"]
    assert storage_roles.status == "fail" and "blobs/write, data" in storage_roles.message
    assert "Storage Blob Data Contributor" in storage_roles.hint and "Storage Table Data Contributor" in \
        storage_roles.hint
    # Storage on a port nobody listens: while Azure answers, an unreachable account is a failure, not "offline".
    assert checks["storage"].status == "fail" and "connection refused" in checks["storage"].message
    assert doc.exit_code(list(checks.values())) == 1


def test_storage_refusing_the_key_is_a_failure_with_the_fix(httpserver, env, azurite):
    """A real Azurite answering 403 to a wrong shared key (in Azure: a missing data role, same answer)."""
    wrong_key = re.sub(r"AccountKey=[^;]+", "AccountKey=" + base64.b64encode(b"not-the-account-key-" * 3).decode(),
                       azurite)
    settings = Settings.from_env({**env, "STORAGE_ACCOUNT_URL": "", "AzureWebJobsStorage": wrong_key})
    doctor = doctor_for(httpserver, wrong_key)
    doctor.arm_reachable = True

    check = doc.check_storage(settings, doctor)

    assert check.status == "fail" and "403" in check.message and "devstoreaccount1" in check.message
    assert "account key" in check.hint
    assert "not-the-account-key" not in check.message + check.hint
    aad = Settings.from_env(env)
    check = doc.check_storage(aad, doctor_for(httpserver, wrong_key))
    assert check.status == "fail" and "Storage Blob Data Contributor" in check.hint


def test_wrong_names_and_a_missing_endpoint(httpserver, env, azurite):
    httpserver.expect_request(WS_PATH, query_string=ML_API).respond_with_json(arm_error(
        "ResourceNotFound", f"The Resource 'Microsoft.MachineLearningServices/workspaces/{WS}' under resource group "
        f"'{RG}' was not found."), status=404)
    httpserver.expect_request(WS_PATH + PERMS, query_string=PERM_API).respond_with_json(
        permissions(ROLE_DATA_SCIENTIST))
    httpserver.expect_request(SUBMIT_PATH).respond_with_data("", status=404)
    httpserver.expect_request(f"{WS_PATH}/onlineEndpoints/{ENDPOINT}", query_string=ML_API).respond_with_json(
        arm_error("ResourceNotFound", "not found"), status=404)
    httpserver.expect_request(SA_PATH + PERMS, query_string=PERM_API).respond_with_json(
        permissions(ROLE_BLOB, ROLE_TABLE))

    checks = by_name(doc.run_checks(env, doctor_for(httpserver, azurite)))

    assert checks["workspace"].status == "fail" and "not found" in checks["workspace"].message
    assert "ResourceNotFound" in checks["workspace"].message
    assert "AZUREML_WORKSPACE_NAME" in checks["workspace"].hint
    assert checks["scoring endpoint"].status == "ok" and "first deploy creates it" in checks["scoring endpoint"].message


def test_batch_endpoint_pipeline_gets_an_ml_token_and_roles_follow_the_kind(httpserver, env, azurite):
    env = {**env, "PIPELINE_KIND": "batch-endpoint", "AZUREML_WORKSPACE_ID": WS_PATH,
           "PIPELINE_ENDPOINT_URL": httpserver.url_for("/jobs"), "STORAGE_ACCOUNT_URL": "",
           "AzureWebJobsStorage": azurite, "DRIFT_COMPUTE": "cpu-cluster"}
    httpserver.expect_request(WS_PATH, query_string=ML_API).respond_with_json(workspace_body())
    # A data scientist role with job writes carved out: only the drift job submission is missing.
    carved = {**ROLE_DATA_SCIENTIST, "notActions": ["Microsoft.MachineLearningServices/workspaces/jobs/write"]}
    httpserver.expect_request(WS_PATH + PERMS, query_string=PERM_API).respond_with_json(permissions(carved))
    httpserver.expect_request("/jobs", headers={"Authorization": f"Bearer {ML_TOKEN}"}).respond_with_data(
        "", status=405)
    httpserver.expect_request(f"{WS_PATH}/onlineEndpoints/{ENDPOINT}", query_string=ML_API) \
        .respond_with_json(endpoint_body())
    credential = ScopedCredential()

    checks = by_name(doc.run_checks(env, doctor_for(httpserver, azurite, credential)))

    assert checks["pipeline endpoint"].status == "ok", checks["pipeline endpoint"]
    assert "https://ml.azure.com/.default" in credential.scopes
    roles = checks["workspace roles"]
    assert roles.status == "fail" and "1 of 11" in roles.message and "drift profiling job" in roles.message
    assert checks["storage"].status == "ok" and "shared key" in checks["storage"].message
    assert checks["storage roles"].status == "ok" and "no data roles needed" in checks["storage roles"].message
    assert not any(r.path.endswith(PERMS) and "storageAccounts" in r.path for r, _ in httpserver.log)
    assert ML_TOKEN not in json.dumps(doc.to_json(list(checks.values())))


def test_permissions_are_read_across_pages_on_the_arm_host_only(httpserver, env, azurite):
    httpserver.expect_request(WS_PATH, query_string=ML_API).respond_with_json(workspace_body())
    next_link = httpserver.url_for(WS_PATH + PERMS) + "?api-version=2022-04-01&%24skiptoken=page2"
    httpserver.expect_request(WS_PATH + PERMS, query_string=PERM_API).respond_with_json(
        {**permissions(doc.BUILTIN_ROLES["Reader"]), "nextLink": next_link})
    httpserver.expect_request(WS_PATH + PERMS, query_string={"api-version": "2022-04-01", "$skiptoken": "page2"}) \
        .respond_with_json(permissions(ROLE_DATA_SCIENTIST))
    httpserver.expect_request(SA_PATH + PERMS, query_string=PERM_API).respond_with_json(
        {**permissions(ROLE_BLOB, ROLE_TABLE), "nextLink": "https://elsewhere.example/steal?token=1"})
    httpserver.expect_request(SUBMIT_PATH).respond_with_data("", status=405)
    httpserver.expect_request(f"{WS_PATH}/onlineEndpoints/{ENDPOINT}", query_string=ML_API) \
        .respond_with_json(endpoint_body())

    checks = by_name(doc.run_checks(env, doctor_for(httpserver, azurite)))

    assert checks["workspace roles"].status == "ok", checks["workspace roles"]
    assert checks["storage roles"].status == "ok"
    assert sum(1 for r, _ in httpserver.log if r.args.get("$skiptoken") == "page2") == 1


def test_with_a_token_but_no_network_every_check_says_it_could_not_be_made(httpserver, env):
    closed = free_port()
    env = {**env, "PIPELINE_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}{SUBMIT_PATH}", "STORAGE_ACCOUNT_URL": "",
           "AzureWebJobsStorage": azurite_connection_string(AZURITE_ACCOUNT, new_storage_key(), blob=free_port(),
                                                            table=free_port())}
    doctor = doc.Doctor(credential=ScopedCredential(), arm_url=f"http://127.0.0.1:{closed}", timeout_s=2)

    checks = doc.run_checks(env, doctor)

    results = by_name(checks)
    assert results["credential"].status == "ok"
    for name in ("workspace", "workspace roles", "pipeline endpoint", "scoring endpoint", "storage"):
        assert results[name].status == "skipped", results[name]
        assert "not checked" in results[name].message
    assert "connection refused" in results["workspace"].message
    assert doc.exit_code(checks) == 2


# ------------------------------------------------------------------------------------------ the real CLI, offline


def offline_env(tmp_path: Path) -> dict[str, str]:
    """The caller's environment without any Azure login: no service principal, no managed identity endpoint,
    a HOME with no Azure CLI profile or token cache."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "RETRAIN_", "PIPELINE_", "STORAGE_"))
           and k not in ("AzureWebJobsStorage",)}
    env.update(HOME=str(tmp_path), AZURE_CONFIG_DIR=str(tmp_path / ".azure"), PYTHONUNBUFFERED="1")
    return env


def settings_file(tmp_path: Path, **values: str) -> Path:
    base = {"RETRAIN_MODE": "azure", "STORAGE_ACCOUNT_URL": "https://retrainsa.blob.core.windows.net",
            "PIPELINE_KIND": "published", "PIPELINE_ENDPOINT_URL": f"https://westeurope.api.azureml.ms{SUBMIT_PATH}",
            "AZURE_SUBSCRIPTION_ID": SUB, "AZURE_RESOURCE_GROUP": RG, "AZUREML_WORKSPACE_NAME": WS}
    base.update(values)
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {k: v for k, v in base.items() if v}}))
    return path


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*RETRAIN, "azure", "doctor", *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_offline_says_what_it_could_not_check_and_exits_2(tmp_path):
    env = offline_env(tmp_path)
    path = settings_file(tmp_path)

    proc = run_cli("--settings", str(path), "--json", env=env)

    assert proc.returncode == 2, proc.stderr
    body = json.loads(proc.stdout)
    checks = by_name(doc.Check(**c) for c in body["checks"])
    assert body["ok"] is False and checks["settings"].status == "ok"
    assert checks["credential"].status == "skipped"
    assert "no credential: DefaultAzureCredential found none" in checks["credential"].message
    assert "az login" in checks["credential"].hint
    assert all(c.status == "skipped" and "no credential" in c.message
               for n, c in checks.items() if n not in ("settings", "credential"))
    assert "Attempted credentials" not in proc.stderr  # azure-identity's own warning is not repeated

    table = run_cli("--settings", str(path), env=env)
    assert table.returncode == 2
    assert "no credential" in table.stdout and "not checked" in table.stdout and "–" in table.stdout
    assert "1 ok, 0 failed, 8 not checked" in table.stdout


def test_cli_with_a_missing_setting_fails_naming_it(tmp_path):
    env = offline_env(tmp_path)
    path = settings_file(tmp_path, PIPELINE_ENDPOINT_URL="")

    proc = run_cli("--settings", str(path), "--json", env=env)

    assert proc.returncode == 1
    settings_check = json.loads(proc.stdout)["checks"][0]
    assert settings_check["status"] == "fail" and "PIPELINE_ENDPOINT_URL" in settings_check["message"]
    missing = run_cli("--settings", str(tmp_path / "nope.json"), env=env)
    assert missing.returncode == 2 and "cannot read settings file" in missing.stderr
