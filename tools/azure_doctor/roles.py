"""The Azure RBAC actions the app uses, and which built-in roles grant them (answered offline from the
roles' permission blocks)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.settings import Settings

ML = "Microsoft.MachineLearningServices/workspaces"
BLOB = "Microsoft.Storage/storageAccounts/blobServices"
TABLE = "Microsoft.Storage/storageAccounts/tableServices"


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
