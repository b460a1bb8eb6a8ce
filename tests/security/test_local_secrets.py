"""Another process on the machine against the running local stack: Azurite's published development key opens
nothing, `retrain keys --json` gives the stack's own storage connection string, and no path outside the stack's
run outputs (or a folder whose content is not the registered one) is ever loaded by the scoring endpoint:
not through /admin/deploy, not through `retrain promote`, not when the scoring endpoint restarts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from local.processes import PROJECT_ROOT
from shared.bootstrap import build_stores
from shared.scoring.model_digest import folder_digest
from shared.settings import Settings
from tests.e2e.api_stack import start_api_stack
from tests.integration.test_scoring_bluegreen import save_pipeline_model
from tests.unit.test_stack_secrets import PUBLISHED_KEY

pytestmark = pytest.mark.e2e
RETRAIN = [sys.executable, "-m", "tools.cli"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_api_stack(tmp_path_factory.mktemp("secrets-stack"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def models(stack):
    return build_stores(Settings(storage_connection=stack.config.connection_string)).models


@pytest.fixture(scope="module")
def foreign_model(small_bank_csv, tmp_path_factory):
    """A valid MLflow model that this stack did not train, outside its run outputs."""
    frame = pd.read_csv(small_bank_csv, nrows=600)
    return save_pipeline_model(tmp_path_factory.mktemp("foreign") / "model", frame, seed=5)


def cli(stack, *args: str) -> subprocess.CompletedProcess:
    """The real CLI in another process, as a user in another terminal runs it against this stack."""
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "RETRAIN_BASE_URL",
                                                            "RETRAIN_FUNCTION_KEY", "RETRAIN_WEBHOOK_SECRET",
                                                            "RETRAIN_MODE")}
    env["RETRAIN_LOCAL_DIR"] = str(stack.config.local_dir)
    return subprocess.run([*RETRAIN, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180)


def admin_deploy(stack, body: dict) -> requests.Response:
    return requests.post(stack.config.scoring_url + "/admin/deploy", json=body, timeout=60,
                         headers={"Authorization": f"Bearer {stack.secrets['scoring_admin_key']}"})


def test_the_published_azurite_key_is_refused(stack):
    published = re.sub(r"AccountKey=[^;]+", "AccountKey=" + PUBLISHED_KEY, stack.config.connection_string)
    with pytest.raises(HttpResponseError) as info:
        list(TableServiceClient.from_connection_string(published).list_tables())
    assert info.value.status_code == 403
    with pytest.raises(HttpResponseError) as info:
        TableServiceClient.from_connection_string(published).get_table_client("models").create_entity(
            {"PartitionKey": "model", "RowKey": "9999999999", "model_dir": "/tmp/evil"})
    assert info.value.status_code == 403
    with pytest.raises(HttpResponseError) as info:
        list(BlobServiceClient.from_connection_string(published).list_containers())
    assert info.value.status_code == 403


def test_retrain_keys_prints_the_stacks_working_storage_connection_string(stack):
    done = cli(stack, "keys", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert set(shown) >= {"function_key", "webhook_secret", "base_url", "storage_connection_string"}
    connection = shown["storage_connection_string"]
    assert connection == stack.config.connection_string and PUBLISHED_KEY not in connection
    tables = [t.name for t in TableServiceClient.from_connection_string(connection).list_tables()]
    assert "audit" in tables


@pytest.mark.parametrize("where", ["/etc", "foreign"])
def test_admin_deploy_of_a_path_outside_the_run_outputs_is_403(stack, foreign_model, where):
    folder = "/etc" if where == "/etc" else str(foreign_model)
    answer = admin_deploy(stack, {"model_dir": folder, "version": "99", "digest": folder_digest(foreign_model)})
    assert answer.status_code == 403, answer.text
    assert answer.json()["reason"] == "outside_root" and "not under the models root" in answer.json()["error"]
    assert requests.get(stack.config.scoring_url + "/health", timeout=10).json()["model_version"] is None


def test_admin_deploy_without_a_digest_is_400(stack, foreign_model):
    answer = admin_deploy(stack, {"model_dir": str(foreign_model), "version": "99"})
    assert answer.status_code == 400 and answer.json()["reason"] == "no_digest"


def test_promote_refuses_a_registered_folder_outside_the_runs_and_one_without_digest(stack, models, foreign_model):
    live_before = getattr(models.live(), "version", None)  # another test of this module may have set one
    outside = models.register(run_id="forged-1", dataset_version=1, model_dir=str(foreign_model), metrics={},
                              digest=folder_digest(foreign_model))
    done = cli(stack, "promote", str(outside.version))
    assert done.returncode == 1
    assert done.stdout == "" and f"model v{outside.version}" in done.stderr
    assert "403" in done.stderr and "not under the models root" in done.stderr
    unhashed = models.register(run_id="old-1", dataset_version=1, model_dir=str(foreign_model), metrics={})
    done = cli(stack, "promote", str(unhashed.version))
    assert done.returncode == 1 and "has no registered content hash" in done.stderr and "retrain" in done.stderr
    assert getattr(models.live(), "version", None) == live_before  # neither refused promote went live
    outcomes = [r.outcome for r in stack.audit.list() if r.function == "promote"]
    assert outcomes.count("failed") >= 2


def health(stack) -> dict:
    return requests.get(stack.config.scoring_url + "/health", timeout=10).json()


def test_a_restarted_scoring_endpoint_serves_only_a_verified_live_model(stack, models, foreign_model):
    forged = models.register(run_id="forged-2", dataset_version=1, model_dir=str(foreign_model), metrics={},
                             digest=folder_digest(foreign_model))
    models.set_live(forged.version)  # as if the models table had been rewritten
    stack.restart("scoring")
    assert health(stack) == {"status": "ok", "model_version": None}
    # the control: the same bytes inside the run outputs, registered with their digest, are served after a restart
    inside = stack.config.runs_dir / "run-copied" / "outputs" / "model"
    shutil.copytree(foreign_model, inside)
    good = models.register(run_id="run-copied", dataset_version=1, model_dir=str(inside), metrics={},
                           digest=folder_digest(inside))
    models.set_live(good.version)
    stack.restart("scoring")
    assert health(stack)["model_version"] == str(good.version)
    # one byte changed after registration: not served after the next restart
    (pkl,) = inside.glob("*.pkl")
    data = bytearray(pkl.read_bytes())
    data[len(data) // 2] ^= 0x01
    pkl.write_bytes(bytes(data))
    stack.restart("scoring")
    assert health(stack) == {"status": "ok", "model_version": None}
