"""The `settings` check: the app's settings parse, and RETRAIN_MODE is azure."""

from __future__ import annotations

from collections.abc import Mapping

from shared.settings import Settings, SettingsError
from tools.azure_doctor.resources import storage_account_name
from tools.azure_doctor.results import FAIL, OK, Check


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
