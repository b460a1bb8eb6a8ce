"""`retrain keys` and `retrain trigger` as a user runs them: real subprocesses of `.venv/bin/retrain`, a real HTTP
server on 127.0.0.1 standing in for the Functions host (RETRAIN_BASE_URL etc.), or a `.local` folder written by the
stack's own code. Exit codes, output, and that the key and secret never show up except in `retrain keys`."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from local import stack_secrets
from local.functions_host.keys import load_or_create_keys
from local.processes import PROJECT_ROOT, free_port
from local.stack import Stack, StackConfig
from shared.domain.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

_SCRIPT = Path(sys.executable).parent / "retrain"
RETRAIN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "tools.cli"]
KEY = "fk-" + secrets.token_urlsafe(32)
SECRET = "ws-" + secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def server():
    s = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    s.start()
    yield s
    s.clear()
    if s.is_running():
        s.stop()


class Host:
    def __init__(self, server: HTTPServer, *answers: Response):
        self.answers = list(answers)
        self.requests: list[dict] = []
        self.base_url = f"http://127.0.0.1:{server.port}"
        self._lock = threading.Lock()
        server.clear()
        server.expect_request("/api/retrain", method="POST").respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        with self._lock:
            self.requests.append({"body": request.get_data(), "headers": {k.lower(): v for k, v in request.headers},
                                  "url": request.url, "query": request.query_string})
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def accepted(run_id: str) -> Response:
    body = {"id": run_id, "run_id": run_id, "status": "Submitted", "dataset_version": 3, "reason": "nightly",
            "audit_id": "http-9"}
    return Response(json.dumps(body), 202, headers={"Location": f"/api/runs/{run_id}"},
                    content_type="application/json")


def problem(status: int, title: str, detail: str) -> Response:
    return Response(json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}), status,
                    content_type="application/problem+json")


def base_env(local_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RETRAIN_") and k not in ("AzureWebJobsStorage", "SCORING_URL")}
    env["RETRAIN_LOCAL_DIR"] = str(local_dir)
    return env


def remote_env(tmp_path: Path, base_url: str) -> dict[str, str]:
    return {**base_env(tmp_path / "empty-local"), "RETRAIN_BASE_URL": base_url, "RETRAIN_FUNCTION_KEY": KEY,
            "RETRAIN_WEBHOOK_SECRET": SECRET}


def retrain(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*RETRAIN, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)


def assert_no_secrets(proc: subprocess.CompletedProcess, *values: str) -> None:
    for value in values or (KEY, SECRET):
        assert value not in proc.stdout and value not in proc.stderr


def verified(request: dict, secret: str = SECRET) -> int:
    return verify(secret, request["body"], request["headers"].get(SIGNATURE_HEADER.lower()),
                  request["headers"].get(TIMESTAMP_HEADER.lower()), now=time.time())


# ------------------------------------------------------------------------------------------------- keys


def test_keys_json_prints_exactly_the_values_from_the_environment(tmp_path):
    proc = retrain("keys", "--json", env=remote_env(tmp_path, "https://my-app.azurewebsites.net/"))
    assert proc.returncode == 0, proc.stderr
    # a remote app's storage is not known here (AzureWebJobsStorage unset): null, never the local stack's
    # nor its scoring endpoint or Event Grid system key (SCORING_URL / SCORING_KEY unset): null
    assert json.loads(proc.stdout) == {"function_key": KEY, "webhook_secret": SECRET,
                                       "base_url": "https://my-app.azurewebsites.net",
                                       "storage_connection_string": None, "scoring_url": None, "scoring_key": None,
                                       "eventgrid_webhook_url": None,
                                       "dashboard_url": "https://my-app.azurewebsites.net/api/dashboard?code="
                                                        + quote(KEY, safe="")}
    assert list(json.loads(proc.stdout)) == ["function_key", "webhook_secret", "base_url",
                                             "storage_connection_string", "scoring_url", "scoring_key",
                                             "eventgrid_webhook_url", "dashboard_url"]
    assert proc.stderr == ""


def test_keys_without_json_says_these_are_secrets(tmp_path):
    proc = retrain("keys", env=remote_env(tmp_path, "http://127.0.0.1:7071"))
    assert proc.returncode == 0, proc.stderr
    assert "SECRETS" in proc.stdout and KEY in proc.stdout and SECRET in proc.stdout
    assert "http://127.0.0.1:7071" in proc.stdout


@pytest.fixture
def local_stack_dir(tmp_path) -> Path:
    """`.local` as `retrain up` leaves it while serving: secrets.json, secrets/host.json and stack.json, each
    written by the stack's own code (Stack() creates the secrets and host keys; _write_state the state file)."""
    assert "webhook_secret" in stack_secrets.NAMES
    local = tmp_path / "local"
    stack = Stack(StackConfig(local_dir=local, host_port=free_port()))
    stack._write_state()
    return local


def test_keys_json_reads_the_running_local_stack(local_stack_dir):
    proc = retrain("keys", "--json", env=base_env(local_stack_dir))
    assert proc.returncode == 0, proc.stderr
    state = json.loads((local_stack_dir / "stack.json").read_text())
    host_keys, secrets_ = load_or_create_keys(local_stack_dir), stack_secrets.load_or_create(local_stack_dir)
    assert json.loads(proc.stdout) == {
        "function_key": host_keys.function_keys["default"],
        "webhook_secret": secrets_["webhook_secret"],
        "base_url": state["host_url"],
        "storage_connection_string": stack_secrets.storage_connection_string(
            secrets_[stack_secrets.STORAGE_KEY],
            blob=state["ports"]["blob_port"], queue=state["ports"]["queue_port"], table=state["ports"]["table_port"]),
        "scoring_url": state["scoring_url"] + "/score", "scoring_key": secrets_["scoring_key"],
        "eventgrid_webhook_url": f"{state['host_url']}/runtime/webhooks/eventgrid?functionName=run_completed"
                                 f"&code={host_keys.system_keys['eventgrid_extension']}",
        "dashboard_url": f"{state['host_url']}/api/dashboard?code={quote(host_keys.function_keys['default'], safe='')}"}
    assert state["host_url"].startswith("http://127.0.0.1:")


def test_environment_values_win_over_the_local_stack(local_stack_dir):
    env = {**base_env(local_stack_dir), "RETRAIN_FUNCTION_KEY": KEY}
    proc = retrain("keys", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["function_key"] == KEY
    assert shown["webhook_secret"] == stack_secrets.load_or_create(local_stack_dir)["webhook_secret"]


def test_keys_without_a_running_stack_says_to_run_retrain_up(tmp_path):
    (tmp_path / "local").mkdir()
    proc = retrain("keys", "--json", env=base_env(tmp_path / "local"))
    assert proc.returncode == 1 and proc.stdout == ""
    assert "not running" in proc.stderr and "retrain up" in proc.stderr


def test_keys_for_a_remote_url_never_falls_back_to_the_local_keys(local_stack_dir):
    env = {**base_env(local_stack_dir), "RETRAIN_BASE_URL": "https://my-app.azurewebsites.net"}
    proc = retrain("keys", "--json", env=env)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "RETRAIN_FUNCTION_KEY" in proc.stderr and "RETRAIN_WEBHOOK_SECRET" in proc.stderr
    local_secrets = [load_or_create_keys(local_stack_dir).function_keys["default"],
                     stack_secrets.load_or_create(local_stack_dir)["webhook_secret"]]
    assert_no_secrets(proc, *local_secrets)


def test_keys_names_a_missing_webhook_secret_without_showing_other_secrets(local_stack_dir):
    path = local_stack_dir / "secrets.json"
    values = json.loads(path.read_text())
    values.pop("webhook_secret")
    path.write_text(json.dumps(values))
    proc = retrain("keys", env=base_env(local_stack_dir))
    assert proc.returncode == 1 and proc.stdout == ""
    assert "webhook_secret" in proc.stderr and "retrain up" in proc.stderr
    assert_no_secrets(proc, *values.values(), load_or_create_keys(local_stack_dir).function_keys["default"])


# ------------------------------------------------------------------------------------------------- trigger


def test_trigger_sends_a_signed_request_and_prints_the_run(tmp_path, server):
    host = Host(server, accepted("r-42"))
    proc = retrain("trigger", "--dataset", "latest", "--param", "time_budget_s=120", "--param",
                   "exclude_columns=duration", "--param", "seed=7", "--parameters", '{"evaluation_percent": 20}',
                   "--reason", "nightly", "--requested-by", "ci", env=remote_env(tmp_path, host.base_url))
    assert proc.returncode == 0, proc.stderr
    [got] = host.requests
    assert json.loads(got["body"]) == {"dataset": "latest", "reason": "nightly", "requested_by": "ci", "parameters": {
        "evaluation_percent": 20, "time_budget_s": 120, "exclude_columns": "duration", "seed": 7}}
    verified(got)
    assert got["headers"]["x-functions-key"] == KEY and got["headers"]["content-type"] == "application/json"
    assert got["query"] == b"" and KEY not in got["url"]
    key = got["headers"]["idempotency-key"]
    assert f"idempotency key: {key}" in proc.stderr
    assert "run r-42" in proc.stdout and "Submitted" in proc.stdout
    assert f"location: {host.base_url}/api/runs/r-42" in proc.stdout
    assert_no_secrets(proc)


def test_trigger_json_prints_the_response_body(tmp_path, server):
    host = Host(server, accepted("r-7"))
    proc = retrain("trigger", "--dataset", "v3", "--json", "--idempotency-key", "ci-build-81",
                   env=remote_env(tmp_path, host.base_url))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["run_id"] == "r-7"
    assert host.requests[0]["headers"]["idempotency-key"] == "ci-build-81"
    assert host.requests[0]["body"] == b'{"dataset":"v3"}'
    assert "idempotency key:" not in proc.stderr  # the caller chose it
    assert_no_secrets(proc)


def test_trigger_reports_a_problem_on_stderr_and_exits_1(tmp_path, server):
    detail = "parameters.unknown_flag: unknown parameter; the pipeline accepts ..."
    host = Host(server, problem(400, "Bad Request", detail))
    env = remote_env(tmp_path, host.base_url)
    proc = retrain("trigger", "--dataset", "latest", "--param", "unknown_flag=true", env=env)
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"error 400 Bad Request: {detail}" in proc.stderr.splitlines()
    assert json.loads(host.requests[0]["body"])["parameters"] == {"unknown_flag": True}
    as_json = retrain("trigger", "--dataset", "latest", "--json", env=env)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) == {"type": "about:blank", "title": "Bad Request", "status": 400,
                                          "detail": detail}
    assert_no_secrets(proc)
    assert_no_secrets(as_json)


def test_trigger_retries_a_5xx_with_the_same_key_and_body(tmp_path, server):
    host = Host(server, problem(503, "Service Unavailable", "try again"), accepted("r-9"))
    proc = retrain("trigger", "--dataset", "latest", "--reason", "retry me", env=remote_env(tmp_path, host.base_url))
    assert proc.returncode == 0, proc.stderr
    assert len(host.requests) == 2
    assert len({r["body"] for r in host.requests}) == 1
    assert len({r["headers"]["idempotency-key"] for r in host.requests}) == 1
    stamps = [verified(r) for r in host.requests]
    assert stamps[1] > stamps[0]
    assert "run r-9" in proc.stdout
    assert_no_secrets(proc)


def test_trigger_explains_an_empty_401(tmp_path, server):
    Host(server, Response(b"", 401))
    proc = retrain("trigger", "--dataset", "latest", env=remote_env(tmp_path, f"http://127.0.0.1:{server.port}"))
    assert proc.returncode == 1
    assert any(line.startswith("error 401 Unauthorized: the function key") for line in proc.stderr.splitlines())
    assert_no_secrets(proc)


def test_trigger_never_repeats_a_key_the_service_echoes(tmp_path, server):
    Host(server, problem(403, "Forbidden", f"key {KEY} and secret {SECRET} are not welcome"))
    proc = retrain("trigger", "--dataset", "latest", "--json", env=remote_env(tmp_path, f"http://127.0.0.1:{server.port}"))
    assert proc.returncode == 1
    assert "error 403 Forbidden: key *** and secret *** are not welcome" in proc.stderr
    assert_no_secrets(proc)


def test_trigger_refuses_an_ill_typed_parameter_before_sending(tmp_path, server):
    host = Host(server, accepted("never"))
    proc = retrain("trigger", "--dataset", "latest", "--param", "time_budget_s=soon",
                   env=remote_env(tmp_path, host.base_url))
    assert proc.returncode == 2 and host.requests == []
    assert "time_budget_s: must be an integer" in proc.stderr


def test_trigger_without_a_running_stack_says_to_run_retrain_up(tmp_path):
    (tmp_path / "local").mkdir()
    proc = retrain("trigger", "--dataset", "latest", env=base_env(tmp_path / "local"))
    assert proc.returncode == 1 and "retrain up" in proc.stderr


def test_trigger_gives_up_on_an_unreachable_host_and_prints_the_key_to_retry_with(tmp_path):
    proc = retrain("trigger", "--dataset", "latest", "--idempotency-key", "k-77",
                   env=remote_env(tmp_path, f"http://127.0.0.1:{free_port()}"))
    assert proc.returncode == 1 and proc.stdout == ""
    assert "cannot connect to" in proc.stderr and "4 attempts" in proc.stderr
    assert "--idempotency-key k-77" in proc.stderr
    assert_no_secrets(proc)


def test_trigger_signs_with_the_local_stack_secret(local_stack_dir, server):
    host = Host(server, accepted("r-local"))
    local_key = load_or_create_keys(local_stack_dir).function_keys["default"]
    local_secret = stack_secrets.load_or_create(local_stack_dir)["webhook_secret"]
    env = {**base_env(local_stack_dir), "RETRAIN_BASE_URL": host.base_url}  # loopback: the local keys apply
    proc = retrain("trigger", "--dataset", "latest", env=env)
    assert proc.returncode == 0, proc.stderr
    verified(host.requests[0], local_secret)
    assert host.requests[0]["headers"]["x-functions-key"] == local_key
    assert_no_secrets(proc, local_key, local_secret)


# ------------------------------------------------------------------------------------------------- drift-check


def drift_host(server: HTTPServer, answer: Response) -> list[dict]:
    arrived: list[dict] = []

    def handle(request: Request) -> Response:
        arrived.append({"body": request.get_data(), "headers": {k.lower(): v for k, v in request.headers}})
        return answer

    server.clear()
    server.expect_request("/api/drift-check", method="POST").respond_with_handler(handle)
    return arrived


def test_drift_check_signs_an_empty_body_and_prints_the_verdict(tmp_path, server):
    verdict = {"audit_id": "http-5", "outcome": "no_drift", "detail": "no drift: 0 of 20 columns drifted",
               "run_id": None, "drift": {"drifted": False}, "report": "drift-reports/http-5.html", "job": None}
    arrived = drift_host(server, Response(json.dumps(verdict), 200, content_type="application/json"))
    proc = retrain("drift-check", env=remote_env(tmp_path, f"http://127.0.0.1:{server.port}"))
    assert proc.returncode == 0, proc.stderr
    assert "no_drift: no drift: 0 of 20 columns drifted (audit http-5)" in proc.stdout
    (request,) = arrived
    assert request["body"] == b"" and request["headers"]["x-functions-key"] == KEY
    verified(request)
    assert_no_secrets(proc)


def test_drift_check_while_another_runs_exits_1_naming_it(tmp_path, server):
    busy = Response(json.dumps({"type": "about:blank", "title": "Conflict", "status": 409,
                                "detail": "a drift check is already running (check http-7)"}), 409,
                    headers={"Location": "/api/runs/http-7", "Retry-After": "30"},
                    content_type="application/problem+json")
    arrived = drift_host(server, busy)
    proc = retrain("drift-check", "--json", env=remote_env(tmp_path, f"http://127.0.0.1:{server.port}"))
    assert proc.returncode == 1 and len(arrived) == 1  # sent once
    assert json.loads(proc.stdout)["status"] == 409
    assert "error 409 Conflict: a drift check is already running (check http-7)" in proc.stderr
    assert f"http://127.0.0.1:{server.port}/api/runs/http-7" in proc.stderr
    assert_no_secrets(proc)
