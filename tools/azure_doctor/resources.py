"""The ARM ids the checks ask about, from the settings."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from shared.settings import Settings


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
