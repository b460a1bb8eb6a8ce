"""`retrain demo` and `retrain up` as a user runs them: real subprocesses, the whole stack, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from local.processes import PROJECT_ROOT, port_open
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e
RETRAIN = [sys.executable, "-m", "tools.cli"]


def test_demo_exits_0_with_a_json_summary_when_a_new_model_answers(tmp_path, small_bank_csv):
    env = {**os.environ, "RETRAIN_LOCAL_DIR": str(tmp_path / "local")}
    env.pop("AzureWebJobsStorage", None)
    proc = subprocess.run([*RETRAIN, "demo", "--free-ports", "--budget-s", "3", "--data", str(small_bank_csv)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "deployed"
    assert summary["dataset_version"] == 1 and summary["model_version"] == 1 and summary["run_id"]
    assert 0 < summary["upload_to_post_s"] < summary["upload_to_serving_s"]
    assert len(summary["prediction"]) == 2 and set(summary["prediction"]) <= {"yes", "no"}
    for stage in ("upload seen by the blob trigger", "validated", "dataset version registered",
                  "POST to the pipeline endpoint accepted", "training", "run completed", "model deployed",
                  "sample scoring request answered"):
        assert stage in proc.stdout, stage
    assert not (tmp_path / "local" / "stack.json").exists()
    keys = list(json.loads((tmp_path / "local" / "secrets.json").read_text()).values())
    host_keys = json.loads((tmp_path / "local" / "secrets" / "host.json").read_text())
    keys += [host_keys["masterKey"], *host_keys["functionKeys"].values(), *host_keys["systemKeys"].values()]
    logs = "".join(p.read_text() for p in (tmp_path / "local" / "logs").glob("*.log")) + proc.stdout + proc.stderr
    assert len(keys) >= 6 and all(len(k) >= 32 for k in keys)
    for secret in keys:
        assert secret not in logs


def test_up_serves_until_ctrl_c_then_stops_every_child(tmp_path):
    env = {**os.environ, "RETRAIN_LOCAL_DIR": str(tmp_path / "local")}
    env.pop("AzureWebJobsStorage", None)
    proc = subprocess.Popen([*RETRAIN, "up", "--free-ports"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    state_file = tmp_path / "local" / "stack.json"
    try:
        wait_for(lambda: state_file.exists() or proc.poll() is not None, timeout=120, every=0.2,
                 what="the stack's state file (or `retrain up` exiting)")
        assert state_file.exists(), proc.stdout.read() if proc.poll() is not None else "stack did not come up"
        state_text = state_file.read_text()
        ports = list(json.loads(state_text)["ports"].values())
        assert all(port_open(p) for p in ports)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "all local processes stopped" in out
    host = json.loads((tmp_path / "local" / "secrets" / "host.json").read_text())
    key = host["functionKeys"]["default"]
    host_url = f"http://127.0.0.1:{json.loads(state_text)['ports']['host_port']}"
    assert f"dashboard: {host_url}/api/dashboard?code={key}" in out  # the interactive command prints the page
    assert not any(port_open(p) for p in ports)
    assert not state_file.exists()
