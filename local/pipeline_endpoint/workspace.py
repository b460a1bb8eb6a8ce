"""The stand-in workspace's ARM id: the `topic` of its run events and the parent of its jobs."""

from __future__ import annotations

LOCAL_WORKSPACE = {"sub": "00000000-0000-0000-0000-000000000000", "rg": "local-rg", "ws": "local-ws"}


def workspace_topic(sub: str, rg: str, ws: str) -> str:
    """The `topic` of a workspace's run events: its ARM id
    (https://learn.microsoft.com/azure/event-grid/event-schema-machine-learning)."""
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"


def local_workspace_id() -> str:
    """The ARM id of the stand-in workspace `submit_url` points at: the local stack's AZUREML_WORKSPACE_ID, so the
    run events this endpoint stamps with it pass the completion handler's topic check."""
    return workspace_topic(**LOCAL_WORKSPACE)
