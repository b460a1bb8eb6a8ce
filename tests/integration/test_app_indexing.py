"""Index the real app exactly as the Python worker does: a fresh interpreter, the script root first on sys.path,
the module named by PYTHON_SCRIPT_FILE_NAME, one FunctionApp, its functions and bindings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from function_app import API_METHODS
from local.processes import PROJECT_ROOT

INDEX = """
import json, sys
from local.functions_host.loader import index_app
functions = index_app(sys.argv[1])
print(json.dumps({f.name: {"trigger": f.trigger_type, "bindings": f.bindings} for f in functions}))
"""


def index_in_fresh_interpreter(script_file: str | None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_SCRIPT_FILE_NAME"}
    if script_file:
        env["PYTHON_SCRIPT_FILE_NAME"] = script_file
    return subprocess.run([sys.executable, "-c", INDEX, str(PROJECT_ROOT)], cwd="/", env=env,
                          capture_output=True, text=True, timeout=120)


def test_in_azure_the_blob_trigger_is_event_grid_sourced_unless_a_setting_says_otherwise(monkeypatch):
    for env, expected in (({"RETRAIN_MODE": "azure"}, "EventGrid"),
                          ({"RETRAIN_MODE": "azure", "BLOB_TRIGGER_SOURCE": "LogsAndContainerScan"},
                           "LogsAndContainerScan"),
                          ({"RETRAIN_MODE": "local", "BLOB_TRIGGER_SOURCE": "EventGrid"}, "EventGrid")):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        if "BLOB_TRIGGER_SOURCE" not in env:
            monkeypatch.delenv("BLOB_TRIGGER_SOURCE", raising=False)
        proc = index_in_fresh_interpreter("main.py")
        assert proc.returncode == 0, proc.stderr
        (binding,) = json.loads(proc.stdout.splitlines()[-1])["blob_upload"]["bindings"]
        assert binding["source"] == expected, env


def test_main_py_indexes_the_expected_functions_and_bindings():
    proc = index_in_fresh_interpreter("main.py")
    assert proc.returncode == 0, proc.stderr
    functions = json.loads(proc.stdout.splitlines()[-1])
    assert sorted(functions) == ["api_docs", "blob_upload", "dashboard_asset", "dashboard_data", "dashboard_page",
                                 "drift_http", "drift_report", "drift_timer", "health", "models_list",
                                 "openapi_json", "outbox_timer", "reconcile_timer", "retrain_http", "rollout_poison",
                                 "rollout_queue", "run_completed", "runs_get", "runs_list"]
    assert functions["blob_upload"] == {"trigger": "blobTrigger", "bindings": [
        {"direction": "IN", "type": "blobTrigger", "name": "blob", "path": "%INCOMING_CONTAINER%/{name}",
         "connection": "AzureWebJobsStorage", "source": "EventGrid"}]}  # local too (webhooks/blobs)
    assert functions["outbox_timer"] == {"trigger": "timerTrigger", "bindings": [
        {"direction": "IN", "type": "timerTrigger", "name": "timer", "schedule": "%OUTBOX_SCHEDULE%",
         "runOnStartup": True, "useMonitor": False}]}
    assert functions["drift_timer"] == {"trigger": "timerTrigger", "bindings": [
        {"direction": "IN", "type": "timerTrigger", "name": "timer", "schedule": "%DRIFT_SCHEDULE%",
         "runOnStartup": False, "useMonitor": True}]}
    assert functions["reconcile_timer"] == {"trigger": "timerTrigger", "bindings": [
        {"direction": "IN", "type": "timerTrigger", "name": "timer", "schedule": "%RECONCILE_SCHEDULE%",
         "runOnStartup": False, "useMonitor": True}]}
    # The API's routes take every common method, so the function itself answers a wrong one with 405 (the host
    # would answer 404 with an empty body)
    api_methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    http_in, http_out = functions["retrain_http"]["bindings"]
    assert http_in == {"direction": "IN", "type": "httpTrigger", "name": "req", "methods": api_methods,
                       "authLevel": "FUNCTION", "route": "retrain"}
    assert http_out == {"direction": "OUT", "type": "http", "name": "$return"}
    # the dashboard: the page, its data and drift reports need the function key; its two static files do not
    for name, route, auth in (("dashboard_page", "dashboard", "FUNCTION"),
                              ("dashboard_data", "dashboard/data", "FUNCTION"),
                              ("dashboard_asset", "dashboard/assets/{name}", "ANONYMOUS"),
                              ("drift_report", "drift-reports/{id}", "FUNCTION")):
        assert functions[name]["bindings"][0] == {"direction": "IN", "type": "httpTrigger", "name": "req",
                                                  "methods": api_methods, "authLevel": auth, "route": route}
    assert functions["run_completed"] == {"trigger": "eventGridTrigger", "bindings": [
        {"direction": "IN", "type": "eventGridTrigger", "name": "event"}]}
    for name, queue in (("rollout_queue", "%ROLLOUT_QUEUE%"), ("rollout_poison", "%ROLLOUT_QUEUE%-poison")):
        assert functions[name] == {"trigger": "queueTrigger", "bindings": [
            {"direction": "IN", "type": "queueTrigger", "name": "msg", "queueName": queue,
             "connection": "AzureWebJobsStorage"}]}, name
    for name, route, auth in (("runs_get", "runs/{id}", "FUNCTION"), ("runs_list", "runs", "FUNCTION"),
                              ("models_list", "models", "FUNCTION"), ("health", "health", "ANONYMOUS"),
                              ("openapi_json", "openapi.json", "ANONYMOUS"), ("api_docs", "docs", "ANONYMOUS")):
        assert functions[name] == {"trigger": "httpTrigger", "bindings": [
            {"direction": "IN", "type": "httpTrigger", "name": "req", "methods": api_methods, "authLevel": auth,
             "route": route},
            {"direction": "OUT", "type": "http", "name": "$return"}]}, name
    drift_in, _ = functions["drift_http"]["bindings"]
    assert (drift_in["route"], drift_in["methods"], drift_in["authLevel"]) == ("drift-check", API_METHODS, "FUNCTION")


def test_the_default_entry_name_does_not_silently_pick_the_trigger_package():
    """Without PYTHON_SCRIPT_FILE_NAME the worker looks for function_app.py; the function_app/ package must not
    be mistaken for the app (it holds blueprints, not a FunctionApp)."""
    proc = index_in_fresh_interpreter(None)
    assert proc.returncode != 0
    assert "function_app.py not found" in proc.stderr


def test_local_settings_sample_names_main_py():
    sample = json.loads((PROJECT_ROOT / "local.settings.sample.json").read_text())
    assert sample["Values"]["PYTHON_SCRIPT_FILE_NAME"] == "main.py"
