"""The local Functions host as a real process against a real Azurite, driving the sample app in
tests/fixtures/sample_app (entry file `entry_app.py`, blueprints in a `function_app/` package)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from local.functions_host.keys import HostKeys, load_or_create_keys
from local.functions_host.storage import LeaseLock
from local.processes import (
    PROJECT_ROOT,
    Child,
    azurite_argv,
    python_argv,
    start_child,
    start_on_free_ports,
)
from tests.waiting import wait_for

SAMPLE = PROJECT_ROOT / "tests" / "fixtures" / "sample_app"
SETTINGS = SAMPLE / "sample.settings.json"
SAMPLE_FUNCTIONS = {"hello", "items_latest", "items_get", "admin_only", "boom", "echo", "nothing", "tick",
                    "slow_tick", "on_startup", "on_upload", "always_fails", "on_event", "queue_worker", "enqueue",
                    "mismatched", "slow", "on_blob_event"}
MAX_DEQUEUE = 4  # the sample's host.json extensions.queues.maxDequeueCount: blob and queue tries alike




def suffix() -> str:
    return uuid.uuid4().hex[:10]


@dataclass
class Host:
    child: Child
    url: str
    keys: HostKeys
    conn: str
    env: dict

    @property
    def function_key(self) -> str:
        return self.keys.function_keys["default"]

    @property
    def master(self) -> dict:
        return {"x-functions-key": self.keys.master_key}

    def log(self) -> str:
        return self.child.log_path.read_text(errors="replace")

    def markers(self, kind: str) -> list[dict]:
        return read_markers(self.conn, self.env["MARKER_CONTAINER"], kind)

    def stop(self, timeout: float = 15.0) -> int:
        self.child.stop(timeout)
        return self.child.proc.returncode


def read_markers(conn: str, container: str, kind: str) -> list[dict]:
    client = BlobServiceClient.from_connection_string(conn).get_container_client(container)
    try:
        names = sorted(b.name for b in client.list_blobs(name_starts_with=f"{kind}/"))
        return [json.loads(client.download_blob(n).readall()) for n in names]
    except ResourceNotFoundError:
        return []


def start_host(log_dir: Path, conn: str, name: str, **env: str) -> Host:
    """Start `python -m local.functions_host` on the sample app; keys are created first, so the host reuses them."""
    local_dir = log_dir / "local"
    keys = load_or_create_keys(local_dir)
    tag = suffix()
    environ = {"AzureWebJobsStorage": conn, "PYTHON_SCRIPT_FILE_NAME": "entry_app.py",
               "RETRAIN_LOCAL_DIR": str(local_dir), "AzureFunctionsJobHost__id": f"test-{tag}",
               "MARKER_CONTAINER": f"mk{tag}", "UPLOAD_CONTAINER": f"up{tag}", "FAIL_CONTAINER": f"fl{tag}",
               "WORK_QUEUE": f"wq{tag}", "EVENT_CONTAINER": f"ev{tag}",
               "BLOB_TRIGGER_POLL_S": "0.2", "FUNCTIONS_HOST_SHUTDOWN_TIMEOUT_S": "5", **env}
    child, (port,) = start_on_free_ports(name, 1, host_argv, log_dir=log_dir, env=environ, timeout=30)
    return Host(child, f"http://127.0.0.1:{port}", keys, conn, environ)


def host_argv(ports: tuple[int, ...]) -> list[str]:
    return python_argv("local.functions_host", "--script-root", str(SAMPLE), "--port", str(ports[0]),
                       "--settings", str(SETTINGS))


def restart(host: Host, log_dir: Path, name: str) -> Host:
    """The same host id, containers and keys in a new process."""
    child, (port,) = start_on_free_ports(name, 1, host_argv, log_dir=log_dir, env=host.env, timeout=30)
    return Host(child, f"http://127.0.0.1:{port}", host.keys, host.conn, host.env)


def polled_past(host: Host, box: ContainerClient, kind: str = "upload", pattern: str = "uploads/{}.csv") -> None:
    """Wait until the host has handled a blob uploaded now: its poller has gone over the container at least once
    since, so what a test checks did not happen in that time (a barrier, instead of sleeping for some polls)."""
    name = pattern.format(f"settle-{suffix()}")
    box.upload_blob(name, b"x,y\n0,0\n")
    wait_for(lambda: any(m["name"] == f"{box.container_name}/{name}" for m in host.markers(kind)),
             what=f"the host to handle {name}")


def named(markers: list[dict], name: str) -> list[dict]:
    return [m for m in markers if m["name"] == name]


def container(conn: str, name: str) -> ContainerClient:
    client = BlobServiceClient.from_connection_string(conn).get_container_client(name)
    if not client.exists():
        client.create_container()
    return client


def upload(box: ContainerClient, name: str, data: bytes, **kwargs) -> str:
    """Upload and return the new ETag (quoted, as the service sends it)."""
    return box.get_blob_client(name).upload_blob(data, **kwargs)["etag"]


def hosts_container(conn: str) -> ContainerClient:
    return container(conn, "azure-webjobs-hosts")


def poison_messages(conn: str, container_name: str) -> list[dict]:
    queue = QueueClient.from_connection_string(conn, "webjobs-blobtrigger-poison",
                                               message_decode_policy=TextBase64DecodePolicy())
    try:
        messages = [json.loads(m.content) for m in queue.peek_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []
    return [m for m in messages if m.get("ContainerName") == container_name]


@pytest.fixture(scope="module")
def host(azurite, tmp_path_factory):
    h = start_host(tmp_path_factory.mktemp("host"), azurite, "functions-host")
    yield h
    h.stop()


# indexing ---------------------------------------------------------------------------------------------------------
INDEX = """
import json, sys
from local.functions_host.loader import index_app
try:
    functions = index_app(sys.argv[1], sys.argv[2] or None)
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
else:
    print(json.dumps({"functions": {f.name: {"trigger": f.trigger_type, "bindings": f.bindings,
                                             "callable": f.func.__name__} for f in functions}}))
"""


def index(root: Path, script_file: str | None = None, setting: str | None = None) -> dict:
    """index_app in a fresh interpreter, as the worker runs: the sample's `function_app` package must not meet the
    project's own `function_app` package in one sys.modules."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_SCRIPT_FILE_NAME"}
    if setting:
        env["PYTHON_SCRIPT_FILE_NAME"] = setting
    out = subprocess.run([sys.executable, "-c", INDEX, str(root), script_file or ""], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_index_lists_functions_and_bindings_from_the_script_file_setting():
    functions = index(SAMPLE, setting="entry_app.py")["functions"]
    assert set(functions) == SAMPLE_FUNCTIONS
    assert functions["items_get"]["trigger"] == "httpTrigger" and functions["items_get"]["callable"] == "items_get"
    trigger, ret = functions["items_get"]["bindings"]
    assert trigger == {"direction": "IN", "type": "httpTrigger", "name": "req", "methods": ["GET"],
                       "authLevel": "FUNCTION", "route": "items/{id:int}"}
    assert ret == {"direction": "OUT", "type": "http", "name": "$return"}
    assert functions["tick"]["bindings"][0]["schedule"] == "%TICK_SCHEDULE%"
    assert functions["on_startup"]["bindings"][0]["runOnStartup"] is True
    upload = functions["on_upload"]["bindings"][0]
    assert (upload["type"], upload["path"], upload["connection"]) == (
        "blobTrigger", "%UPLOAD_CONTAINER%/uploads/{name}.csv", "AzureWebJobsStorage")
    assert functions["on_event"]["trigger"] == "eventGridTrigger"
    assert functions["queue_worker"]["trigger"] == "queueTrigger"
    assert index(SAMPLE, script_file="entry_app.py")["functions"].keys() == functions.keys()


def test_without_the_setting_the_default_script_file_is_required(tmp_path):
    # The sample root has a function_app/ package and no function_app.py: nothing is indexed from the package.
    result = index(SAMPLE)
    assert result["error"] == "FileNotFoundError"
    assert "function_app.py not found" in result["message"] and "PYTHON_SCRIPT_FILE_NAME" in result["message"]


def test_a_package_shadows_function_app_py_as_in_the_worker(tmp_path):
    (tmp_path / "function_app.py").write_text("import azure.functions as func\napp = func.FunctionApp()\n")
    (tmp_path / "function_app").mkdir()
    (tmp_path / "function_app" / "__init__.py").write_text("")
    result = index(tmp_path)
    assert result == {"error": "ValueError",
                      "message": "Could not find top level function app instances in function_app.py."}


def test_zero_or_two_app_instances_are_errors(tmp_path):
    (tmp_path / "none.py").write_text("import azure.functions as func\nbp = func.Blueprint()\n")
    (tmp_path / "two.py").write_text("import azure.functions as func\na = func.FunctionApp()\n"
                                     "b = func.FunctionApp()\n")
    assert index(tmp_path, "none.py")["message"] == "Could not find top level function app instances in none.py."
    two = index(tmp_path, setting="two.py")
    assert two["error"] == "ValueError" and two["message"].startswith("More than one FunctionApp")
    assert "instances are defined" in two["message"]


# HTTP -------------------------------------------------------------------------------------------------------------
def test_root_and_host_status(host):
    assert requests.get(host.url + "/", timeout=5).status_code == 200
    assert requests.get(host.url + "/admin/host/status", timeout=5).status_code == 401
    assert requests.get(host.url + "/admin/host/status", params={"code": host.function_key},
                        timeout=5).status_code == 401
    status = requests.get(host.url + "/admin/host/status", headers=host.master, timeout=5)
    assert status.status_code == 200
    body = status.json()
    assert body["state"] == "Running"
    assert set(body["functions"]) == SAMPLE_FUNCTIONS - {"slow_tick", "mismatched"}
    assert "SLOW_TICK_SCHEDULE" in body["errors"]["slow_tick"] and "queue_worker" not in body["errors"]
    assert "['req']" in body["errors"]["mismatched"]
    assert requests.get(host.url + "/api/mismatched", timeout=5).status_code == 404


def test_function_level_auth(host):
    url = host.url + "/api/items/42"
    for answer in (requests.get(url, timeout=5), requests.get(url, params={"code": "wrong"}, timeout=5),
                   requests.get(url, headers={"x-functions-key": host.keys.system_keys["eventgrid_extension"]},
                                timeout=5)):
        assert answer.status_code == 401 and answer.content == b""
    by_header = requests.get(url, headers={"x-functions-key": host.function_key}, params={"q": "1"}, timeout=5)
    assert by_header.status_code == 200 and by_header.headers["content-type"] == "application/json"
    assert by_header.json()["id"] == "42" and by_header.json()["params"] == {"q": "1"}
    assert by_header.json()["method"] == "GET" and by_header.json()["url"].endswith("/api/items/42?q=1")
    assert requests.get(url, params={"code": host.function_key}, timeout=5).status_code == 200
    assert requests.get(url, headers=host.master, timeout=5).status_code == 200


def test_admin_level_takes_only_the_master_key(host):
    url = host.url + "/api/admin-only"
    assert requests.get(url, headers={"x-functions-key": host.function_key}, timeout=5).status_code == 401
    ok = requests.post(url, params={"code": host.keys.master_key}, timeout=5)  # no methods: every method
    assert ok.status_code == 200 and ok.text == "admin ok" and ok.headers["content-type"].startswith("text/plain")


def test_routes_404_and_405(host):
    assert requests.get(host.url + "/api/hello", timeout=5).text == "Hello, world"  # greeting from settings file
    assert requests.get(host.url + "/api/hello/Ann", timeout=5).text == "Hello, Ann"
    assert requests.get(host.url + "/api/items/latest", timeout=5).text == "latest"  # literal beats {id:int}
    key = {"x-functions-key": host.function_key}
    assert requests.get(host.url + "/api/items/abc", headers=key, timeout=5).status_code == 404
    assert requests.get(host.url + "/api/items/99999999999", headers=key, timeout=5).status_code == 404
    assert requests.get(host.url + "/api/nope", timeout=5).status_code == 404
    assert requests.get(host.url + "/hello", timeout=5).status_code == 404  # no route prefix
    wrong = requests.delete(host.url + "/api/items/1", headers=key, timeout=5)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
    assert requests.post(host.url + "/api/hello/Ann", timeout=5).status_code == 405
    assert requests.delete(host.url + "/api/nothing", timeout=5).status_code == 204


def test_request_and_response_round_trip(host):
    answer = requests.post(host.url + "/api/echo", params={"a": "1"}, json={"x": [1, 2]},
                           headers={"X-Sample": "s"}, timeout=5)
    assert answer.status_code == 201
    assert answer.headers["x-echo"] == "yes" and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["json"] == {"x": [1, 2]} and body["header"] == "s" and body["params"] == {"a": "1"}
    assert body["function_name"] == "echo" and uuid.UUID(body["invocation_id"])
    assert f"Id={body['invocation_id']}" in wait_for(lambda: (lambda t: t if "Executed 'Functions.echo'" in t
                                                              else None)(host.log()), what="echo log")


def test_an_exception_is_a_500_and_the_host_keeps_serving(host):
    failed = requests.get(host.url + "/api/boom", timeout=5)
    assert failed.status_code == 500 and failed.content == b""
    assert requests.get(host.url + "/api/hello", timeout=5).status_code == 200
    log = host.log()
    assert "Executed 'Functions.boom' (Failed, Id=" in log
    assert "Traceback" in log and "RuntimeError: boom, on purpose" in log


def test_bodies_over_100_mb_are_refused(host):
    conn = http.client.HTTPConnection("127.0.0.1", int(host.url.rsplit(":", 1)[1]), timeout=10)
    conn.putrequest("POST", "/api/echo")
    conn.putheader("Content-Length", str(100 * 1024 * 1024 + 1))
    conn.endheaders()
    conn.send(b"{}")
    assert conn.getresponse().status == 413
    conn.close()


def test_unsupported_bindings_are_named_at_startup(host):
    # the function listing is logged once the HTTP server is up, which is also when the port answers: wait for it
    log = wait_for(lambda: (lambda text: text if "Host started" in text else None)(host.log()),
                   what="the host's start-up listing")
    assert "Function 'Functions.queue_worker' is disabled" not in log
    assert "Function 'Functions.enqueue': bindings out (queue) are not supported" in log
    assert "  hello: [GET] " + host.url + "/api/hello/{name?}" in log
    assert "  tick: timerTrigger" in log
    assert requests.post(host.url + "/api/enqueue", data=b"m", timeout=5).status_code == 202


# timers -----------------------------------------------------------------------------------------------------------
def test_run_on_startup_and_admin_fire(host):
    startup = wait_for(lambda: host.markers("startup"), what="runOnStartup invocation")
    assert startup == [{"past_due": False}]
    url = host.url + "/admin/functions/tick"
    assert requests.post(url, json={"input": ""}, timeout=5).status_code == 401
    assert requests.post(url, json={"input": ""}, params={"code": host.function_key}, timeout=5).status_code == 401
    assert requests.post(url, json={"input": ""}, headers=host.master, timeout=5).status_code == 202
    fired = wait_for(lambda: host.markers("tick"), what="fired tick")
    assert len(fired) == 1 and fired[0]["past_due"] is False and fired[0]["schedule"] == {"AdjustForDST": True}
    assert requests.post(host.url + "/admin/functions/nope", json={"input": ""}, headers=host.master,
                         timeout=5).status_code == 404
    assert requests.post(host.url + "/admin/functions/slow_tick", json={"input": ""}, headers=host.master,
                         timeout=5).status_code == 404  # disabled: its schedule setting is missing
    assert requests.post(host.url + "/admin/functions/hello", json={"input": ""}, headers=host.master,
                         timeout=5).status_code == 400


def test_timer_every_second_keeps_status_and_never_overlaps(azurite, tmp_path):
    h = start_host(tmp_path, azurite, "timer-host", TICK_SCHEDULE="* * * * * *", SLOW_TICK_SCHEDULE="* * * * * *",
                   SLOW_TICK_SLEEP_S="1.3")
    try:
        wait_for(lambda: len(h.markers("tick")) >= 3 and len(h.markers("slow_tick")) >= 3, timeout=15,
                 what="timer runs")
    finally:
        code = h.stop()
    assert code == 0
    ticks = h.markers("tick")
    assert all(t["schedule"] == {"AdjustForDST": True} for t in ticks)
    assert set(ticks[-1]["schedule_status"]) == {"Last", "Next", "LastUpdated"}
    hosts = hosts_container(azurite)
    host_id = h.env["AzureFunctionsJobHost__id"]
    status = json.loads(hosts.download_blob(f"timers/{host_id}/Host.Functions.tick/status").readall())
    last, nxt = datetime.fromisoformat(status["Last"]), datetime.fromisoformat(status["Next"])
    assert (nxt - last).total_seconds() == 1 and datetime.fromisoformat(status["LastUpdated"]) >= last
    # no useMonitor on a one-second schedule: like the real host, no status is kept
    assert not hosts.get_blob_client(f"timers/{host_id}/Host.Functions.slow_tick/status").exists()
    slow = h.markers("slow_tick")
    for before, after in zip(slow, slow[1:], strict=False):
        assert after["start"] >= before["end"] - 0.01, "runs of one timer overlapped"
    assert any(s["past_due"] for s in slow[1:]), "an occurrence that waited for a run must be past due"
    assert "Executed 'Functions.slow_tick' (Succeeded" in h.log() and "Host stopped" in h.log()


def test_past_due_fires_once_on_start_and_not_after_a_restart(azurite, tmp_path):
    tag = suffix()
    host_id = f"pastdue-{tag}"
    old = {"Last": "2020-01-01T00:00:00+00:00", "Next": "2021-01-01T00:00:00+00:00",
           "LastUpdated": "2020-01-01T00:00:01+00:00"}
    hosts_container(azurite).upload_blob(f"timers/{host_id}/Host.Functions.tick/status", json.dumps(old))
    h = start_host(tmp_path, azurite, "pastdue-host", AzureFunctionsJobHost__id=host_id)  # TICK_SCHEDULE: yearly
    try:
        fired = wait_for(lambda: h.markers("tick"), what="past-due tick")
        assert fired[0]["past_due"] is True and fired[0]["schedule_status"]["Last"] == old["Last"]
        status = wait_for(lambda: (lambda s: s if s["Last"] != old["Last"] else None)(json.loads(
            hosts_container(azurite).download_blob(f"timers/{host_id}/Host.Functions.tick/status").readall())),
            what="status update")
        assert datetime.fromisoformat(status["Next"]) == datetime(datetime.now(UTC).year + 1, 1, 1, tzinfo=UTC)
    finally:
        assert h.stop() == 0
    again = restart(h, tmp_path, "pastdue-host-2")
    try:
        wait_for(lambda: len(again.markers("startup")) == 2, what="second start")
        # an absence over a span of scheduler passes (every 0.1 s): no event says "it decided not to fire", so
        # the span itself is what is checked, not an ordering of events
        time.sleep(0.5)
        assert len(again.markers("tick")) == 1
    finally:
        again.stop()


def test_the_listener_lock_has_one_holder(azurite):
    hosts = hosts_container(azurite)
    name = f"locks/test-{suffix()}/Host.Functions.tick.Listener"
    first, second = LeaseLock(hosts, name), LeaseLock(hosts, name)
    assert first.try_acquire() and not second.try_acquire()
    assert first.renew()
    first.release()
    assert second.try_acquire() and not first.try_acquire()
    second.release()


# blob trigger -----------------------------------------------------------------------------------------------------
def test_blob_upload_runs_once_per_etag(host, azurite):
    box = container(azurite, host.env["UPLOAD_CONTAINER"])
    first = upload(box, "uploads/a.csv", b"x,y\n1,2\n", metadata={"origin": "test"})
    box.upload_blob("uploads/a.txt", b"not matched")
    box.upload_blob("other/a.csv", b"not matched")
    a_csv = f"{host.env['UPLOAD_CONTAINER']}/uploads/a.csv"
    marker = wait_for(lambda: next(iter(named(host.markers("upload"), a_csv)), None), what="blob trigger")
    assert marker["content"] == "x,y\n1,2\n" and marker["length"] == 8
    assert marker["uri"].endswith(f"/{host.env['UPLOAD_CONTAINER']}/uploads/a.csv")
    assert marker["properties"]["ETag"] == first and marker["properties"]["ContentLength"] == 8
    assert marker["properties"]["LastModified"] and marker["metadata"] == {"origin": "test"}
    polled_past(host, box)
    assert len(named(host.markers("upload"), a_csv)) == 1
    box_name = host.env["UPLOAD_CONTAINER"]
    assert not named(host.markers("upload"), f"{box_name}/uploads/a.txt")  # the path pattern is uploads/{name}.csv
    assert not named(host.markers("upload"), f"{box_name}/other/a.csv")
    second = upload(box, "uploads/a.csv", b"x,y\n3,4\n", overwrite=True)
    again = wait_for(lambda: (lambda m: m if len(m) == 2 else None)(named(host.markers("upload"), a_csv)),
                     what="second run")
    assert again[1]["content"] == "x,y\n3,4\n" and again[1]["properties"]["ETag"] == second
    receipt = (f"blobreceipts/{host.env['AzureFunctionsJobHost__id']}/Host.Functions.on_upload/"
               f"{second.strip(chr(34))}/{host.env['UPLOAD_CONTAINER']}/uploads/a.csv")
    metadata = wait_for(lambda: (lambda md: md if md.get("Outcome") else None)(
        hosts_container(azurite).get_blob_client(receipt).get_blob_properties().metadata), what="completed receipt")
    assert metadata == {"DequeueCount": "1", "Outcome": "Succeeded"}
    polled_past(host, box)
    assert len(named(host.markers("upload"), a_csv)) == 2


def test_a_blob_named_with_dot_segments_is_handed_over_by_name_without_being_read(host, azurite):
    """`uploads/a/../b.csv` cannot be addressed by the SDK (its URL would become `uploads/b.csv`): the function gets
    the name and no content, and the receipt is kept under the name's hash."""
    import hashlib

    from tests.raw_blob import put_raw

    box = container(azurite, host.env["UPLOAD_CONTAINER"])
    upload(box, "uploads/b.csv", b"x,y\n9,9\n")  # what a normalised URL would have read
    assert put_raw(BlobServiceClient.from_connection_string(azurite), box.container_name, "uploads/a/../b.csv",
                   b"x,y\n1,2\n") == 201
    name = f"{host.env['UPLOAD_CONTAINER']}/uploads/a/../b.csv"
    marker = wait_for(lambda: next((m for m in host.markers("upload") if m["name"] == name), None),
                      what="the dot-segment blob handed over")
    assert marker["content"] == "" and marker["properties"]["ContentLength"] == 8
    digest = hashlib.sha256(b"uploads/a/../b.csv").hexdigest()
    receipt = (f"blobreceipts/{host.env['AzureFunctionsJobHost__id']}/Host.Functions.on_upload/"
               f"{marker['properties']['ETag'].strip(chr(34))}/{host.env['UPLOAD_CONTAINER']}/unaddressable/{digest}")
    wait_for(lambda: hosts_container(azurite).get_blob_client(receipt).get_blob_properties().metadata.get("Outcome"),
             what="its receipt under the name's hash")
    assert "uploads/a/../b.csv" in [b.name for b in box.list_blobs()]  # left as it is


def test_a_failing_blob_is_tried_max_dequeue_count_times_then_poisoned(host, azurite):
    fail_container = host.env["FAIL_CONTAINER"]
    etag = upload(container(azurite, fail_container), "bad.csv", b"oops")
    messages = wait_for(lambda: poison_messages(azurite, fail_container), timeout=20, what="poison message")
    assert messages == [{"Type": "BlobTrigger", "FunctionId": "Host.Functions.always_fails", "BlobType": "BlockBlob",
                         "ContainerName": fail_container, "BlobName": "bad.csv", "ETag": etag}]
    # a second failing blob, uploaded now, tried as often and poisoned: bad.csv had as long to be tried again
    box = container(azurite, fail_container)
    settle = f"settle-{suffix()}.csv"
    box.upload_blob(settle, b"oops")
    wait_for(lambda: any(m["BlobName"] == settle for m in poison_messages(azurite, fail_container)), timeout=20,
             what="the second blob poisoned")
    assert len(named(host.markers("fail"), f"{fail_container}/bad.csv")) == MAX_DEQUEUE
    assert [m["BlobName"] for m in poison_messages(azurite, fail_container)].count("bad.csv") == 1
    assert "gave up on " + f"{fail_container}/bad.csv after {MAX_DEQUEUE} tries" in host.log()


def test_receipts_survive_a_restart(azurite, tmp_path):
    tag = suffix()
    env = {"AzureFunctionsJobHost__id": f"restart-{tag}", "UPLOAD_CONTAINER": f"up{tag}", "FAIL_CONTAINER": f"fl{tag}"}
    box = container(azurite, env["UPLOAD_CONTAINER"])
    box.upload_blob("uploads/before.csv", b"present at start")
    h = start_host(tmp_path, azurite, "restart-host", **env)
    try:
        wait_for(lambda: h.markers("upload"), what="blob present at start")
    finally:
        assert h.stop() == 0
    box.upload_blob("uploads/while-down.csv", b"uploaded while the host was down")
    # A failing blob whose receipt already counts all tries but one (say the host died then): one more, then poison.
    bad = upload(container(azurite, env["FAIL_CONTAINER"]), "late.csv", b"bad")
    receipt = (f"blobreceipts/{env['AzureFunctionsJobHost__id']}/Host.Functions.always_fails/"
               f"{bad.strip(chr(34))}/{env['FAIL_CONTAINER']}/late.csv")
    hosts_container(azurite).upload_blob(receipt, b"", metadata={"IncompleteFunctionInvocationId": "x",
                                                                 "DequeueCount": str(MAX_DEQUEUE - 1)})
    again = restart(h, tmp_path, "restart-host-2")
    try:
        wait_for(lambda: len(again.markers("upload")) == 2, what="blob uploaded while down")
        wait_for(lambda: poison_messages(azurite, env["FAIL_CONTAINER"]), what="poison after the fifth try")
        polled_past(again, box)
        contents = [m["content"] for m in again.markers("upload") if "/uploads/settle-" not in m["name"]]
        assert contents == ["present at start", "uploaded while the host was down"]
        assert len(again.markers("fail")) == 1
    finally:
        again.stop()


def test_blob_polling_rides_out_a_storage_outage(tmp_path):
    """Its own Azurite, stopped and started again under the running host: a warning, no crash, no busy loop."""
    from local.processes import azurite_env
    from local.stack_secrets import new_storage_key
    from shared.settings import AZURITE_ACCOUNT, azurite_connection_string

    key = new_storage_key()
    storage, ports = start_on_free_ports("azurite-outage", 3, lambda p: azurite_argv(tmp_path / "azurite", *p),
                                         log_dir=tmp_path, env=azurite_env(AZURITE_ACCOUNT, key))
    argv = azurite_argv(tmp_path / "azurite", *ports)  # started again on the same ports after the outage
    conn = azurite_connection_string(AZURITE_ACCOUNT, key, blob=ports[0], queue=ports[1], table=ports[2])
    h = start_host(tmp_path, conn, "outage-host", TICK_SCHEDULE="0 0 0 1 1 *")
    try:
        box_name = h.env["UPLOAD_CONTAINER"]
        container(conn, box_name)
        storage.stop()
        # ten polls against a closed port: the test counts warnings over that span (one, not one per poll), so the
        # span is the thing under test, not a wait for an event
        time.sleep(2.0)
        assert h.child.proc.poll() is None
        warnings = [line for line in h.log().splitlines()
                    if "'Functions.on_upload': cannot list container" in line]
        assert len(warnings) == 1, warnings
        storage = start_child("azurite-outage-2", argv, ports=ports, log_dir=tmp_path,
                              env=azurite_env(AZURITE_ACCOUNT, key))
        storage.wait_ready(60)
        upload(container(conn, box_name), "uploads/after.csv", b"after the outage")
        seen = wait_for(lambda: h.markers("upload"), timeout=20, what="upload after the outage")
        assert seen[0]["content"] == "after the outage"
        assert "storage is reachable again" in h.log()
    finally:
        try:
            # a storage call of the outage (a listener's, or a timed-out function's in the SDK's retry back-off)
            # must not hold the stop past FUNCTIONS_HOST_SHUTDOWN_TIMEOUT_S (5 s) plus the host's 3 s thread grace
            started = time.monotonic()
            code = h.stop()
            took = time.monotonic() - started
            assert code == 0, f"the host did not stop gracefully within the helper's 15 s (exit {code}, {took:.1f}s)"
        finally:
            storage.stop()


# Event Grid -------------------------------------------------------------------------------------------------------
def grid_event(**data) -> dict:
    return {"id": uuid.uuid4().hex, "topic": "/subscriptions/s/resourceGroups/r", "subject": "experiments/e/runs/1",
            "eventType": "Microsoft.MachineLearningServices.RunCompleted", "eventTime": "2026-01-02T03:04:05.123Z",
            "data": data, "dataVersion": "2", "metadataVersion": "1"}


def post_events(host, body, kind="Notification", code=None, function="on_event", raw=None):
    params = {"functionName": function, "code": host.keys.system_keys["eventgrid_extension"] if code is None else code}
    return requests.post(host.url + "/runtime/webhooks/eventgrid", params=params, headers={"aeg-event-type": kind},
                         data=raw if raw is not None else json.dumps(body), timeout=10)


def test_event_grid_validation_and_auth(host):
    validation = {"id": "v", "topic": "t", "subject": "", "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1",
                  "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode": "c-1"}}
    answer = post_events(host, [validation], kind="SubscriptionValidation")
    assert answer.status_code == 200 and answer.json() == {"validationResponse": "c-1"}
    assert post_events(host, [grid_event()], code="wrong").status_code == 401
    assert post_events(host, [grid_event()], code=host.function_key).status_code == 401
    assert post_events(host, [grid_event()], code="").status_code == 401
    assert post_events(host, [], code=host.keys.master_key, kind="Unsubscribe").status_code == 202
    assert post_events(host, [grid_event()], function="nope").status_code == 404
    bad = post_events(host, None, raw=b"[{not json")
    assert bad.status_code == 400 and "not valid JSON" in bad.text


def test_event_grid_notifications(host):
    events = [grid_event(runId="r1"), grid_event(runId="r2")]
    assert post_events(host, events).status_code == 202
    seen = wait_for(lambda: (lambda m: m if len(m) >= 2 else None)(host.markers("event")), what="event markers")
    by_id = {m["id"]: m for m in seen}
    first = by_id[events[0]["id"]]
    assert first["topic"] == events[0]["topic"] and first["subject"] == "experiments/e/runs/1"
    assert first["event_type"] == "Microsoft.MachineLearningServices.RunCompleted"
    assert first["data"] == {"runId": "r1"} and first["data_version"] == "2"
    assert datetime.fromisoformat(first["event_time"]) == datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    assert by_id[events[1]["id"]]["data"] == {"runId": "r2"}
    assert post_events(host, [grid_event(fail=True)]).status_code == 500
    assert requests.get(host.url + "/", timeout=5).status_code == 200


# nothing secret is ever logged -----------------------------------------------------------------------------------
def test_keys_never_reach_the_log(host):
    """Calls carrying each of the host's keys in `code` (the test makes its own: in random order it may run first),
    then the whole log so far: every request line shows the parameter masked and no key appears anywhere."""
    keys = host.keys.all_values()
    before = host.log().count("code=[REDACTED]")
    for key in keys:
        post_events(host, [], code=key, kind="Unsubscribe")
    wait_for(lambda: host.log().count("code=[REDACTED]") >= before + len(keys), what="a masked request line per key")
    log = host.log()
    for key in keys:
        assert key not in log
