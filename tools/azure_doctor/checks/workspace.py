"""The `workspace` check: ARM GET of the Azure ML workspace (Workspaces - Get)."""

from __future__ import annotations

from shared.settings import Settings
from tools.azure_doctor.doctor import ML_API_VERSION, Doctor, Unreachable, arm_error, arm_unreachable, needs_token
from tools.azure_doctor.resources import workspace_id
from tools.azure_doctor.results import FAIL, OK, Check


def check_workspace(settings: Settings, doctor: Doctor) -> Check:
    name = "workspace"
    if (skip := needs_token(name, doctor)) is not None:
        return skip
    ws = settings.azureml_workspace_name
    try:
        response = doctor.arm(workspace_id(settings), ML_API_VERSION)
    except Unreachable as exc:
        return arm_unreachable(name, doctor, exc)
    status = response.status_code
    if status == 200:
        body = response.json()
        location = body.get("location") or "?"
        state = (body.get("properties") or {}).get("provisioningState")
        if state and state != "Succeeded":
            return Check(name, FAIL, f"workspace {ws} is in state {state}", "wait for it, or look at it in the portal")
        return Check(name, OK, f"workspace {ws} found ({location})")
    detail = arm_error(response)
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
