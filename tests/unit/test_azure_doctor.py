"""`retrain azure doctor`, the parts that need no server: settings, RBAC matching against the built-in role
definitions, credential outcomes, redaction, exit codes and output. The HTTP checks: tests/integration/
test_azure_doctor_http.py."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError

from shared.settings import Settings
from tools import azure_doctor as doc

SUB, RG, WS = "00000000-1111-2222-3333-444444444444", "retrain-rg", "retrain-ws"
PIPELINE = (f"https://westeurope.api.azureml.ms/pipelines/v1.0/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{WS}/PipelineRuns/PipelineSubmit/6f1c7d2e")


def azure_env(**over: str) -> dict[str, str]:
    env = {"RETRAIN_MODE": "azure", "STORAGE_ACCOUNT_URL": "https://retrainsa.blob.core.windows.net",
           "PIPELINE_KIND": "published", "PIPELINE_ENDPOINT_URL": PIPELINE, "AZURE_SUBSCRIPTION_ID": SUB,
           "AZURE_RESOURCE_GROUP": RG, "AZUREML_WORKSPACE_NAME": WS}  # v1 unless a test says batch-endpoint
    env.update(over)
    return {k: v for k, v in env.items() if v is not None}


def jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk"


# ------------------------------------------------------------------------------------------ RBAC


def settings(**over: str) -> Settings:
    return Settings.from_env(azure_env(**over))


@pytest.mark.parametrize("env", [{}, {"DRIFT_COMPUTE": "cpu-cluster"},
                                 {"PIPELINE_KIND": "batch-endpoint", "AZUREML_WORKSPACE_ID": "/x/workspaces/ws"}])
def test_azureml_data_scientist_grants_every_workspace_action_the_app_uses(env):
    role = doc.BUILTIN_ROLES["AzureML Data Scientist"]
    for need in doc.workspace_needs(settings(**env)):
        assert doc.allowed(need, [role]), need


def test_azureml_data_scientist_excludes_what_its_definition_excludes():
    role = [doc.BUILTIN_ROLES["AzureML Data Scientist"]]
    ml = "Microsoft.MachineLearningServices/workspaces"
    # `workspaces/*/write` covers `workspaces/write`: that is why the role lists it under notActions.
    assert doc.allowed(doc.Need("read", f"{ml}/read"), role)
    assert not doc.allowed(doc.Need("modify the workspace", f"{ml}/write"), role)
    assert not doc.allowed(doc.Need("create compute", f"{ml}/computes/write"), role)
    assert not doc.allowed(doc.Need("workspace keys", f"{ml}/listKeys/action"), role)
    assert doc.allowed(doc.Need("endpoint keys", f"{ml}/onlineEndpoints/listKeys/action"), role)
    assert not doc.allowed(doc.Need("other provider", "Microsoft.Storage/storageAccounts/write"), role)


def test_storage_data_roles_grant_the_storage_needs_and_contributor_does_not():
    contributors = [doc.BUILTIN_ROLES["Storage Blob Data Contributor"],
                    doc.BUILTIN_ROLES["Storage Table Data Contributor"]]
    assert all(doc.allowed(n, contributors) for n in doc.STORAGE_NEEDS)
    owner = [doc.BUILTIN_ROLES["Storage Blob Data Owner"], doc.BUILTIN_ROLES["Storage Table Data Contributor"]]
    assert all(doc.allowed(n, owner) for n in doc.STORAGE_NEEDS)
    control_only = [doc.BUILTIN_ROLES["Contributor"]]
    assert not any(doc.allowed(n, control_only) for n in doc.STORAGE_NEEDS if n.data)
    readers = [doc.BUILTIN_ROLES["Storage Blob Data Reader"], doc.BUILTIN_ROLES["Storage Table Data Reader"]]
    denied = {n.purpose for n in doc.STORAGE_NEEDS if not doc.allowed(n, readers)}
    assert {"write blobs", "update entities", "create the app's containers"} <= denied
    assert {"read blobs", "read entities"}.isdisjoint(denied)
    blob_write = next(n for n in doc.STORAGE_NEEDS if n.action.endswith("blobs/write"))
    assert sorted(doc.roles_granting(blob_write)) == ["Storage Blob Data Contributor", "Storage Blob Data Owner"]


def test_not_actions_only_subtract_within_their_own_role_assignment():
    need = doc.Need("deploy", "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/write")
    denying = {"actions": ["*"], "notActions": ["Microsoft.MachineLearningServices/*"]}
    assert not doc.allowed(need, [denying])
    assert doc.allowed(need, [denying, {"actions": ["microsoft.machinelearningservices/workspaces/*"]}])  # any case
    assert not doc.allowed(doc.Need("d", "Microsoft.Storage/x/read", data=True), [{"actions": ["*"]}])


# ------------------------------------------------------------------------------------------ settings


def test_settings_ok_names_what_will_be_checked_and_no_secret():
    check, s = doc.check_settings(azure_env(STORAGE_ACCOUNT_URL="", AzureWebJobsStorage=(
        "DefaultEndpointsProtocol=https;AccountName=retrainsa;AccountKey=c2VjcmV0LWtleQ==;EndpointSuffix=core.windows.net")))
    assert check.status == "ok" and s is not None
    assert "retrain-ws" in check.message and "retrainsa" in check.message and "shared key" in check.message
    assert "c2VjcmV0LWtleQ" not in check.message


@pytest.mark.parametrize(("drop", "named"), [("PIPELINE_ENDPOINT_URL", "PIPELINE_ENDPOINT_URL"),
                                             ("AZUREML_WORKSPACE_NAME", "AZUREML_WORKSPACE_NAME"),
                                             ("STORAGE_ACCOUNT_URL", "STORAGE_ACCOUNT_URL")])
def test_a_missing_setting_is_a_failed_settings_check_naming_it_and_nothing_else_runs(drop, named):
    checks = doc.run_checks(azure_env(**{drop: None}), doc.Doctor(credential=ExplodingCredential()))
    assert checks[0].name == "settings" and checks[0].status == "fail" and named in checks[0].message
    assert [c.status for c in checks[1:]] == ["skipped"] * 8
    assert doc.exit_code(checks) == 1


def test_local_mode_is_not_what_the_doctor_checks():
    check, _ = doc.check_settings(azure_env(RETRAIN_MODE="local"))
    assert check.status == "fail" and "RETRAIN_MODE=azure" in check.hint


def test_settings_file_values_win_over_the_environment(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"AZUREML_WORKSPACE_NAME": "from-file"}}))
    env = doc.load_env(str(path), {"AZUREML_WORKSPACE_NAME": "from-env", "OTHER": "kept"})
    assert env["AZUREML_WORKSPACE_NAME"] == "from-file" and env["OTHER"] == "kept"
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="Values"):
        doc.load_env(str(tmp_path / "bad.json"), {})


def test_pipeline_of_another_workspace_fails_before_any_call():
    s = settings(PIPELINE_ENDPOINT_URL=PIPELINE.replace(f"/workspaces/{WS}/", "/workspaces/other-ws/"))
    check = doc.check_pipeline(s, doc.Doctor(credential=ExplodingCredential()))
    assert check.status == "fail" and "other-ws" in check.message
    s = settings(PIPELINE_KIND="batch-endpoint", PIPELINE_ENDPOINT_URL="https://e.westeurope.inference.ml.azure.com/jobs",
                 AZUREML_WORKSPACE_ID=f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
                                      "Microsoft.MachineLearningServices/workspaces/elsewhere")
    check = doc.check_pipeline(s, doc.Doctor(credential=ExplodingCredential()))
    assert check.status == "fail" and "AZUREML_WORKSPACE_ID" in check.message
    check = doc.check_pipeline(settings(PIPELINE_ENDPOINT_URL=PIPELINE.replace("https://", "http://")),
                               doc.Doctor(credential=ExplodingCredential()))
    assert check.status == "fail" and "not https" in check.message


def test_storage_account_scope_from_the_url_or_the_override():
    s = settings()
    assert doc.storage_account_name(s) == "retrainsa"
    assert doc.storage_account_id(s) == (f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
                                         "Microsoft.Storage/storageAccounts/retrainsa")
    other = f"/subscriptions/{SUB}/resourceGroups/data-rg/providers/Microsoft.Storage/storageAccounts/retrainsa"
    assert doc.storage_account_id(settings(STORAGE_ACCOUNT_RESOURCE_ID=other + "/")) == other
    assert doc.storage_account_name(settings(STORAGE_ACCOUNT_URL="http://127.0.0.1:10000/devstoreaccount1")) == \
        "devstoreaccount1"


# ------------------------------------------------------------------------------------------ credential


class ExplodingCredential:
    def get_token(self, *scopes, **kwargs):
        raise AssertionError("no token may be asked for here")


class RaisingCredential:
    def __init__(self, exc: Exception):
        self.exc = exc

    def get_token(self, *scopes, **kwargs):
        raise self.exc


class JwtCredential:
    """Hands out one Entra-style JWT (StaticTokenCredential's tokens are per-audience HMACs, not JWTs)."""

    def __init__(self, token: str):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, int(time.time()) + 3600)


class HangingCredential:
    def __init__(self):
        self.release = threading.Event()

    def get_token(self, *scopes, **kwargs):
        self.release.wait(30)
        return AccessToken("late", int(time.time()) + 60)


DAC_TEXT = "\n".join([  # DefaultAzureCredential's message when nothing is configured (azure-identity 1.27)
    "DefaultAzureCredential failed to retrieve a token from the included credentials.",
    "Attempted credentials:",
    "\tEnvironmentCredential: EnvironmentCredential authentication unavailable. Environment variables are not "
    "fully configured.",
    "Visit https://aka.ms/azsdk/python/identity/environmentcredential/troubleshoot to troubleshoot this issue.",
    "\tManagedIdentityCredential: ManagedIdentityCredential authentication unavailable.",
    "\tSharedTokenCacheCredential: SharedTokenCacheCredential authentication unavailable. No accounts were found "
    "in the cache.",
    "\tAzureCliCredential: Azure CLI not found on path",
    "\tAzurePowerShellCredential: PowerShell is not installed",
    "To mitigate this issue, please refer to the troubleshooting guidelines here at "
    "https://aka.ms/azsdk/python/identity/defaultazurecredential/troubleshoot."])


def test_a_token_is_ok_names_the_identity_and_is_never_shown():
    token = jwt({"upn": "ana@contoso.com", "oid": "11111111-2222-3333-4444-555555555555"})
    doctor = doc.Doctor(credential=JwtCredential(token))
    check = doc.check_credential(doctor)
    assert check.status == "ok" and "ana@contoso.com" in check.message and "11111111-2222" in check.message
    assert token not in repr(check) and token in doctor.secrets
    app = jwt({"appid": "aaaa-bbbb", "oid": "o-1"})
    assert doc.token_identity(app) == "app aaaa-bbbb (object id o-1)"
    assert doc.token_identity("not-a-jwt") == "an identity"


@pytest.mark.parametrize(("exc", "status", "words"), [
    (ClientAuthenticationError(DAC_TEXT), "skipped", ["no credential", "DefaultAzureCredential found none",
                                                      "Azure CLI not found on path", "2 more unavailable"]),
    (CredentialUnavailableError("ManagedIdentityCredential authentication unavailable"), "skipped",
     ["no credential"]),
    (ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
                               "Attempted credentials:\n\tEnvironmentCredential: Authentication failed: AADSTS7000215:"
                               " Invalid client secret provided."), "fail", ["AADSTS7000215", "refused"]),
    (ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
                               "Attempted credentials:\n\tEnvironmentCredential: Authentication failed: <urllib3> "
                               "Failed to resolve 'login.microsoftonline.com'"), "skipped", ["offline"]),
    (ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
                               "Attempted credentials:\n\tEnvironmentCredential: EnvironmentCredential authentication"
                               " unavailable. Environment variables are not fully configured.\n"
                               "\tManagedIdentityCredential: Connection refused (http://localhost:8081/msi/token)"),
     "skipped", ["offline", "ManagedIdentityCredential"]),
    (ClientAuthenticationError("something else went wrong"), "fail", ["authentication failed"]),
])
def test_credential_outcomes(exc, status, words):
    check = doc.check_credential(doc.Doctor(credential=RaisingCredential(exc)))
    assert check.status == status
    for word in words:
        assert word in check.message
    assert "az login" in check.hint and "AZURE_CLIENT_ID" in check.hint and "managed identity" in check.hint


def test_a_credential_that_never_answers_is_given_up_after_the_timeout():
    credential = HangingCredential()
    check = doc.check_credential(doc.Doctor(credential=credential, timeout_s=0.3))
    assert not credential.release.is_set()  # given up while the credential still hangs (timings: bench/timings.py)
    assert check.status == "skipped" and "did not answer within 0.3s" in check.message
    credential.release.set()


def test_without_a_credential_every_azure_check_says_why_it_was_not_made():
    doctor = doc.Doctor(credential=RaisingCredential(ClientAuthenticationError(DAC_TEXT)))
    checks = doc.run_checks(azure_env(), doctor)
    by_name = {c.name: c for c in checks}
    assert by_name["settings"].status == "ok" and by_name["credential"].status == "skipped"
    for name in ("workspace", "workspace roles", "pipeline endpoint", "scoring endpoint", "storage", "storage roles",
                 "collected data"):
        assert by_name[name].status == "skipped" and "no credential" in by_name[name].message, name
    assert doc.exit_code(checks) == 2


# ------------------------------------------------------------------------------------------ output


def test_scrub_removes_tokens_keys_signatures_and_queries():
    token = jwt({"oid": "x"})
    text = (f"Authorization: Bearer {token} GET https://h.blob.core.windows.net/c/b?sv=1&sig=abc%2Fdef "
            f"AccountKey=c2VjcmV0;primaryKey: 'k-123' raw {token} https://x.azurewebsites.net/api/retrain?code=fk-1")
    out = doc.scrub(text, {"k-123"})
    for secret in (token, "abc%2Fdef", "c2VjcmV0", "k-123", "fk-1"):
        assert secret not in out
    assert "https://h.blob.core.windows.net/c/b?…" in out


@pytest.mark.parametrize(("statuses", "code"), [(["ok", "ok"], 0), (["ok", "skipped"], 2), (["skipped", "fail"], 1),
                                                (["fail"], 1), (["skipped"], 2)])
def test_exit_codes(statuses, code):
    assert doc.exit_code([doc.Check(str(i), s, "m") for i, s in enumerate(statuses)]) == code


def test_json_and_table_output():
    checks = [doc.Check("settings", "ok", "fine"), doc.Check("credential", "skipped", "no credential", "az login"),
              doc.Check("workspace", "fail", "404", "check the name")]
    assert doc.to_json(checks) == {"ok": False, "checks": [
        {"name": "settings", "status": "ok", "message": "fine", "hint": ""},
        {"name": "credential", "status": "skipped", "message": "no credential", "hint": "az login"},
        {"name": "workspace", "status": "fail", "message": "404", "hint": "check the name"}]}
    from rich.console import Console

    buffer = io.StringIO()
    doc.render(checks, Console(file=buffer, width=160, color_system=None))
    text = buffer.getvalue()
    assert "✓" in text and "✗" in text and "–" in text and "check the name" in text
    assert "1 ok, 1 failed, 1 not checked" in text


def test_main_prints_json_and_returns_the_exit_code():
    out = io.StringIO()
    code = doc.main(json_output=True, env=azure_env(),
                    doctor=doc.Doctor(credential=RaisingCredential(CredentialUnavailableError("none"))), out=out)
    body = json.loads(out.getvalue())
    assert code == 2 and body["ok"] is False
    assert [c["name"] for c in body["checks"]] == ["settings", "credential", "workspace", "workspace roles",
                                                   "pipeline endpoint", "scoring endpoint", "storage", "storage roles",
                                                   "collected data"]


def test_cli_routes_azure_doctor_and_keeps_publish():
    from tools.cli.parser import build_parser

    args = build_parser().parse_args(["azure", "doctor", "--json", "--settings", "x.json", "--timeout-s", "2"])
    assert (args.command, args.azure_command, args.json, args.settings, args.timeout_s) == \
        ("azure", "doctor", True, "x.json", 2.0)
    assert build_parser().parse_args(["azure", "publish", "--dry-run"]).azure_command == "publish"


def test_granting_names_the_roles_that_cover_the_missing_actions_without_their_readers():
    missing = [n for n in doc.STORAGE_NEEDS if n.data]
    text = doc.granting(missing)
    assert "Storage Blob Data Contributor (3 of 7)" in text and "Storage Table Data Contributor (4 of 7)" in text
    assert "Reader" not in text and "Contributor (" in text and not text.startswith("Contributor")
    assert doc.granting([doc.Need("x", "Other.Provider/thing/action", data=True)]) == "none"
