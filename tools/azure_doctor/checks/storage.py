"""The `storage` check: list the containers and tables with the app's credential."""

from __future__ import annotations

from shared.settings import Settings
from tools.azure_doctor.doctor import Doctor, Unreachable, needs_token, unreachable, why_unreachable
from tools.azure_doctor.redact import clip
from tools.azure_doctor.resources import storage_account_name
from tools.azure_doctor.results import FAIL, OK, Check


def check_storage(settings: Settings, doctor: Doctor) -> Check:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    name = "storage"
    aad = bool(settings.storage_account_url)
    account = storage_account_name(settings) or "?"
    if aad and (skip := needs_token(name, doctor, arm=False)) is not None:
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
        return unreachable(name, doctor, f"storage account {account}", why_unreachable(exc, doctor.timeout_s))
    except ClientAuthenticationError as exc:
        status = getattr(exc, "status_code", None)
        return Check(name, FAIL, f"storage account {account} refused the credential ({status or ''} "
                                 f"{clip(getattr(exc, 'error_code', None) or exc.message, 160)})", role_hint)
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
