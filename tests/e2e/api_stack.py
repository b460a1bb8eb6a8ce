"""The local stack as the API tests need it: timers that never fire on their own, a tiny training budget, the
app's services built (the first API call creates the containers the dataset store writes to), and the stores."""

from __future__ import annotations

import os
import subprocess
import sys

import requests

from local.processes import PROJECT_ROOT
from local.stack import Stack, start_on_free_ports
from shared.adapters.credentials import StaticTokenCredential
from shared.adapters.pipeline_client import ARM_SCOPE
from shared.bootstrap import build_stores
from shared.settings import Settings

RETRAIN = [sys.executable, "-m", "tools.cli"]


def run_cli(stack: Stack, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`retrain ARGV...` in another process that finds the stack from its local folder, as a second terminal does
    (none of the environment's storage or scoring settings: only what the stack's folder says)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AzureWebJobsStorage", "SCORING_URL", "SCORING_KEY", "RETRAIN_MODE")}
    env["RETRAIN_LOCAL_DIR"] = str(stack.config.local_dir)
    return subprocess.run([*RETRAIN, *argv], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def start_api_stack(local_dir, *, budget_s: int = 3, **settings: str) -> Stack:
    s = start_on_free_ports(local_dir, training_budget_s=budget_s, blob_poll_s=0.5, drift_schedule="0 0 0 1 1 *",
                            reconcile_schedule="0 0 0 1 1 *", extra_settings=settings)
    config = s.config
    try:
        key = s.host_keys.function_keys["default"]
        assert requests.get(config.host_url + "/api/runs", headers={"x-functions-key": key},
                            timeout=30).status_code == 200
        stores = build_stores(Settings(storage_connection=config.connection_string))
    except BaseException:
        s.stop()
        raise
    s.audit, s.runs, s.datasets = stores.audit, stores.runs, stores.datasets
    return s


def pipeline_jobs(stack: Stack) -> list[dict]:
    """Every job the local pipeline endpoint received, read as a user would in Azure: the workspace's ARM
    Jobs - List (ARM-audience token). Each is {"name": ..., "inputs": {input: literal value or uri}}."""
    settings = stack.app_settings()
    url = f"{settings['AZUREML_ARM_URL'].rstrip('/')}/{settings['AZUREML_WORKSPACE_ID'].strip('/')}/jobs"
    token = StaticTokenCredential(stack.secrets["pipeline_token"]).get_token(ARM_SCOPE).token
    answer = requests.get(url, params={"api-version": "2024-04-01"}, headers={"Authorization": f"Bearer {token}"},
                          timeout=10)
    answer.raise_for_status()
    assert answer.json()["nextLink"] is None  # one page: the local list is never paged
    return [{"name": job["name"],
             "inputs": {name: spec.get("value", spec.get("uri")) for name, spec in job["properties"]["inputs"].items()}}
            for job in answer.json()["value"]]
