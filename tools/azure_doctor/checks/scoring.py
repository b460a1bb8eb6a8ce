"""The `scoring endpoint` check: ARM GET of the managed online endpoint (Online Endpoints - Get): provisioning
state, auth mode key."""

from __future__ import annotations

from shared.settings import Settings
from tools.azure_doctor.doctor import ML_API_VERSION, Doctor, Unreachable, arm_error, arm_unreachable, needs_token
from tools.azure_doctor.resources import workspace_id
from tools.azure_doctor.results import FAIL, OK, Check


def check_scoring(settings: Settings, doctor: Doctor) -> Check:
    name = "scoring endpoint"
    if (skip := needs_token(name, doctor)) is not None:
        return skip
    endpoint = settings.online_endpoint
    try:
        response = doctor.arm(f"{workspace_id(settings)}/onlineEndpoints/{endpoint}", ML_API_VERSION)
    except Unreachable as exc:
        return arm_unreachable(name, doctor, exc)
    status = response.status_code
    if status == 404:
        return Check(name, OK, f"endpoint {endpoint} does not exist yet: the first deploy creates it "
                               "(auth mode key)")
    if status in (401, 403):
        return Check(name, FAIL, f"endpoint {endpoint} could not be read ({status} {arm_error(response)})",
                     "assign 'AzureML Data Scientist' on the workspace")
    if status != 200:
        return Check(name, FAIL, f"endpoint {endpoint}: unexpected answer {status} ({arm_error(response)})",
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
