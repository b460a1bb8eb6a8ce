"""The `workspace roles` and `storage roles` checks: ARM "Permissions - List For Resource" at the workspace and
the storage account, against the actions the app uses."""

from __future__ import annotations

import os
from typing import Any

from shared.adapters.pipeline_client import ARM_SCOPE
from shared.settings import Settings
from tools.azure_doctor.doctor import (
    PERMISSIONS_API_VERSION,
    Doctor,
    Unreachable,
    arm_error,
    arm_unreachable,
    needs_token,
)
from tools.azure_doctor.resources import storage_account_id, workspace_id
from tools.azure_doctor.results import FAIL, OK, Check
from tools.azure_doctor.roles import STORAGE_NEEDS, Need, allowed, granting, workspace_needs


def _permissions(doctor: Doctor, scope: str) -> list[dict[str, Any]]:
    """All permission blocks of the caller at a scope (following nextLink on the ARM host only)."""
    response = doctor.arm(f"{scope}/providers/Microsoft.Authorization/permissions", PERMISSIONS_API_VERSION)
    blocks: list[dict[str, Any]] = []
    for _page in range(10):
        if response.status_code != 200:
            raise _PermissionsError(response.status_code, arm_error(response))
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
    if (skip := needs_token(name, doctor)) is not None:
        return skip
    try:
        blocks = _permissions(doctor, scope)
    except Unreachable as exc:
        return arm_unreachable(name, doctor, exc)
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
