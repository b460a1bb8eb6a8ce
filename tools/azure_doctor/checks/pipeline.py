"""The `pipeline endpoint` check: PIPELINE_ENDPOINT_URL is https, in the configured workspace, reachable and
accepts the token for its scope."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from shared.adapters.pipeline_client import ARM_SCOPE, ML_SCOPE
from shared.redaction import redact_url
from shared.settings import Settings
from tools.azure_doctor.credential import TokenError
from tools.azure_doctor.doctor import Doctor, Unreachable, needs_token, unreachable
from tools.azure_doctor.resources import workspace_id
from tools.azure_doctor.results import FAIL, OK, Check


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
    if (skip := needs_token(name, doctor, arm=False)) is not None:
        return skip
    scope = ML_SCOPE if settings.pipeline_kind == "batch-endpoint" else settings.pipeline_token_scope
    try:
        response = doctor.get(url, scope=scope)
    except TokenError as exc:
        return Check(name, exc.status, f"no token for the pipeline scope {scope}: {exc}",
                     "PIPELINE_TOKEN_SCOPE must be a scope the identity can get (published pipelines: "
                     f"{ARM_SCOPE})")
    except Unreachable as exc:
        return unreachable(name, doctor, parts.netloc, str(exc))
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
