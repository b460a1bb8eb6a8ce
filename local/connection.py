"""How CLI commands in another terminal find the running local stack (or Azure, from app settings)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from local import stack_secrets
from local.processes import PROJECT_ROOT


class StackNotRunning(RuntimeError):
    pass


@dataclass(frozen=True)
class StackInfo:
    storage_connection: str
    host_url: str | None
    scoring_url: str | None


def local_dir() -> Path:
    return Path(os.environ.get("RETRAIN_LOCAL_DIR") or PROJECT_ROOT / ".local")


def find_stack() -> StackInfo:
    """AzureWebJobsStorage in the environment wins (Azure or a custom Azurite); else `.local/stack.json`."""
    if os.environ.get("AzureWebJobsStorage"):
        return StackInfo(os.environ["AzureWebJobsStorage"], os.environ.get("RETRAIN_HOST_URL"),
                         os.environ.get("SCORING_URL"))
    state_file = local_dir() / "stack.json"
    if not state_file.exists():
        raise StackNotRunning("the local stack is not running: start it with `make run` or `.venv/bin/retrain up` "
                              "(or set AzureWebJobsStorage to talk to another storage account)")
    state = json.loads(state_file.read_text())
    ports = state["ports"]
    key = stack_secrets.read(local_dir()).get(stack_secrets.STORAGE_KEY)
    if not key:  # a stack started by an older version runs Azurite with the published key: restart it
        raise StackNotRunning(f"{local_dir() / 'secrets.json'} has no storage account key: stop the local stack "
                              "and start it again (`.venv/bin/retrain up`) so Azurite runs with a generated key")
    return StackInfo(stack_secrets.storage_connection_string(key, blob=ports["blob_port"], queue=ports["queue_port"],
                                                             table=ports["table_port"]),
                     state.get("host_url"), state.get("scoring_url"))
