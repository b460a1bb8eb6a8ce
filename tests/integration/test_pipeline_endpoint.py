"""The local published-pipeline endpoint: REST contract, a real training run, Event Grid delivery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from local.pipeline_endpoint import DEFAULT_PIPELINE_ID, submit_url
from local.processes import python_argv, start_on_free_ports
from shared.adapters.credentials import StaticTokenCredential, scoped_token
from shared.adapters.pipeline_client import PipelineAuthError, PipelineError, PublishedPipelineClient
from tests.local_pipeline import pipeline_endpoint
from tests.waiting import wait_for

TOKEN = "local-pipeline-token"
ARM_TOKEN = scoped_token(TOKEN, "https://management.azure.com/.default")  # v1 routes: ARM audience
# Secrets a process of the stack may hold in its environment; the training process must inherit none of them.
OTHER_SECRETS = {"SCORING_KEY": "scoring-key-5c1e0a", "SCORING_ADMIN_KEY": "admin-key-9d2b7f",
                 "WEBHOOK_SECRET": "webhook-secret-3a8e", "APPLICATIONINSIGHTS_CONNECTION_STRING":
                 "InstrumentationKey=00000000-0000-0000-0000-000000000000"}


@pytest.fixture(scope="module")
def endpoint(azurite, tmp_path_factory, small_bank_csv):
    root = tmp_path_factory.mktemp("pipeline")
    with pipeline_endpoint(azurite, root, small_bank_csv.read_bytes(), token=TOKEN, bad_path="bank/v2/data.csv",
                           env=OTHER_SECRETS) as running:
        client = PublishedPipelineClient(submit_url(f"http://127.0.0.1:{running.port}"), StaticTokenCredential(TOKEN),
                                         max_retries=0)
        yield {"client": client, "events": running.events, "container": running.container, "port": running.port,
               "root": root, "pid": running.child.proc.pid}


def _wait(client, run_id, timeout=300):  # a loaded 2-core machine trains the 3 s budget slowly
    return wait_for(lambda: (lambda run: run if run.finished else None)(client.get_run(run_id)), timeout=timeout,
                    every=0.5, what=f"run {run_id} to finish")


def _events_for(events, run_id, timeout=30):
    return wait_for(lambda: [(req.headers, body) for req in [e[0] for e in events.log] for body in req.get_json()
                             if body["data"]["runId"] == run_id], timeout=timeout, every=0.2,
                    what=f"an event for {run_id}")


def _data_paths(container, path):
    return {"training_data": {"DataStoreName": "workspaceblobstore", "RelativePath": path}}


def test_submit_requires_a_bearer_token(endpoint):
    url = endpoint["client"].submit_url
    assert requests.post(url, json={"ExperimentName": "e"}).status_code == 401
    bad = PublishedPipelineClient(url, StaticTokenCredential("wrong"), max_retries=0)
    with pytest.raises(PipelineAuthError):
        bad.submit(experiment="e", parameters={})
    # the raw secret is no token, and a token for another audience (the batch endpoint's) is refused
    for token in (TOKEN, scoped_token(TOKEN, "https://ml.azure.com/.default")):
        answer = requests.post(url, json={"ExperimentName": "e"}, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_same_body_twice_starts_two_runs(endpoint):
    """No deduplication by trigger id: PipelineSubmit has no idempotency key, so neither has the stand-in."""
    client = endpoint["client"]
    body = {"experiment": "bank-test", "parameters": {"time_budget_s": 2, "trigger_id": "t-twice"},
            "data_paths": _data_paths(endpoint["container"], "bank/v2/data.csv")}
    first, second = client.submit(**body), client.submit(**body)
    assert first.run_id != second.run_id
    listed = requests.get(client.submit_url.split("/PipelineSubmit/")[0] + f"/Pipeline/{DEFAULT_PIPELINE_ID}",
                          headers={"Authorization": f"Bearer {ARM_TOKEN}"}, timeout=10).json()
    assert {first.run_id, second.run_id} <= {r["Id"] for r in listed
                                             if r["ParameterAssignments"].get("trigger_id") == "t-twice"}
    for run in (first, second):
        assert _wait(client, run.run_id).status == "Failed"  # a two-row CSV: both ran, both failed


def test_bad_requests_get_azure_style_errors(endpoint):
    url = endpoint["client"].submit_url
    headers = {"Authorization": f"Bearer {ARM_TOKEN}"}
    r = requests.post(url, json={}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["message"] == "ExperimentName is required."
    r = requests.post(url.replace(DEFAULT_PIPELINE_ID, "nope"), json={"ExperimentName": "e"}, headers=headers)
    assert r.status_code == 404
    with pytest.raises(PipelineError, match="rejected with 400"):
        endpoint["client"].submit(experiment="e", parameters={},
                                  data_paths={"x": {"DataStoreName": "other", "RelativePath": "a/b"}})


@pytest.mark.parametrize(("params", "message"), [
    ({"time_budget_s": "soon"}, "parameter 'time_budget_s': must be an integer; got 'soon'"),
    ({"budget_s": 5}, "parameter 'budget_s': unknown parameter"),
    ({"primary_metric": "f1"}, "parameter 'primary_metric': must be one of AUC_weighted"),
    ({"exclude_columns": "y"}, "parameter 'exclude_columns': unknown column(s) y"),
    ({"reason": "$(id)"}, "parameter 'reason': must be one of upload, drift, http, manual"),
    ({"trigger_id": "t; id"}, "parameter 'trigger_id': must be an id"),
    ({"drift_report": "a|b"}, "parameter 'drift_report': must be a report path"),
    ({"champion_model": "/tmp/`id`"}, "parameter 'champion_model': must be an absolute path"),
    ({"experiment_name": "${{inputs.seed}}"}, "parameter 'experiment_name': must be 1-255 characters"),
    ({"champion_digest": "sha256:x\nid"}, "parameter 'champion_digest': must be sha256:"),
])
def test_unknown_or_ill_typed_parameters_are_a_400_naming_them(endpoint, params, message):
    r = requests.post(endpoint["client"].submit_url, headers={"Authorization": f"Bearer {ARM_TOKEN}"},
                      json={"ExperimentName": "e", "ParameterAssignments": params,
                            "DataPathAssignments": _data_paths(endpoint["container"], "bank/v1/data.csv")})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "UserError" and r.json()["error"]["message"].startswith(message)


def test_a_run_trains_a_real_model_and_delivers_run_completed(endpoint):
    client = endpoint["client"]
    run = client.submit(experiment="bank-test", parameters={"dataset_version": 1, "time_budget_s": 3,
                                                           "trigger_id": "t-1"},
                        data_paths=_data_paths(endpoint["container"], "bank/v1/data.csv"))
    assert run.status == "NotStarted"
    done = _wait(client, run.run_id)
    assert done.status == "Completed", done.raw
    model_dir = Path(done.outputs["model"]["Uri"].removeprefix("file://"))
    assert (model_dir / "MLmodel").exists()
    assert done.outputs["metrics"]["auc"] > 0.8
    ((headers, event),) = _events_for(endpoint["events"], run.run_id)
    assert headers["aeg-event-type"] == "Notification"
    assert event["eventType"] == "Microsoft.MachineLearningServices.RunCompleted"
    assert event["subject"].endswith(f"/runs/{run.run_id}")
    assert event["topic"].endswith("/providers/Microsoft.MachineLearningServices/workspaces/local-ws")
    assert event["data"]["experimentName"] == "bank-test"
    assert event["data"]["runTags"] == {"trigger_id": "t-1"}
    assert {"id", "eventTime", "dataVersion", "metadataVersion"} <= set(event)


def test_a_failing_run_reports_failed_status_changed(endpoint):
    client = endpoint["client"]
    run = client.submit(experiment="bank-test", parameters={"time_budget_s": 2},
                        data_paths=_data_paths(endpoint["container"], "bank/v2/data.csv"))
    done = _wait(client, run.run_id)
    assert done.status == "Failed"
    assert done.raw["Status"]["StatusDetail"]
    ((_, event),) = _events_for(endpoint["events"], run.run_id)
    assert event["eventType"] == "Microsoft.MachineLearningServices.RunStatusChanged"
    assert event["data"]["runStatus"] == "failed"  # the documented sample's spelling


def test_runs_cut_short_by_a_stop_are_failed_and_reported_after_restart(azurite, tmp_path):
    """At-least-once: a run interrupted by Ctrl-C ends as Failed and its event is sent when the endpoint is back."""
    from pytest_httpserver import HTTPServer

    from local.pipeline_endpoint import LocalRun

    events = HTTPServer(host="127.0.0.1", port=0)  # bound now: its port is taken at once
    events.start()
    events.expect_request("/hook", method="POST").respond_with_data("", status=202)
    interrupted = LocalRun(run_id="r-interrupted", pipeline_id=DEFAULT_PIPELINE_ID, experiment="bank-test",
                           parameters={"trigger_id": "t-9"}, data_paths={}, topic="/subscriptions/s",
                           status="Running")
    delivered = LocalRun(run_id="r-done", pipeline_id=DEFAULT_PIPELINE_ID, experiment="bank-test", parameters={},
                         data_paths={}, topic="/subscriptions/s", status="Completed", delivered=True)
    for run in (interrupted, delivered):
        (tmp_path / "runs" / run.run_id).mkdir(parents=True)
        (tmp_path / "runs" / run.run_id / "run.json").write_text(json.dumps(run.__dict__))
    child, (port,) = start_on_free_ports(
        "pipeline-restart", 1, lambda ports: python_argv("local.pipeline_endpoint", "--port", str(ports[0]),
                                                         "--runs-dir", str(tmp_path / "runs")),
        log_dir=tmp_path, env={"LOCAL_PIPELINE_TOKEN": TOKEN, "AzureWebJobsStorage": azurite,
                               "EVENTGRID_WEBHOOK_URL": events.url_for("/hook")})
    try:
        client = PublishedPipelineClient(submit_url(f"http://127.0.0.1:{port}"), StaticTokenCredential(TOKEN))
        run = client.get_run("r-interrupted")
        assert run.status == "Failed" and "stopped during the run" in run.raw["Status"]["StatusDetail"]
        ((_, event),) = _events_for(events, "r-interrupted")
        assert event["data"]["runStatus"] == "failed"  # the documented sample's spelling
        # which runs to re-send is decided when the endpoint loads them, and r-interrupted was the only one: once
        # its delivery is saved the re-send pass is over
        saved = wait_for(lambda: _saved_delivered(tmp_path / "runs" / "r-interrupted" / "run.json"),
                         what="r-interrupted saved delivered")
        assert saved["delivered"] is True
        assert [e for e in events.log if "r-done" in e[0].get_data(as_text=True)] == []
    finally:
        child.stop()
        events.stop()


def _saved_delivered(path):
    """The saved run once it says delivered (None before, or while the file is being rewritten)."""
    try:
        run = json.loads(path.read_text())
    except ValueError:
        return None
    return run if run["delivered"] else None


def _training_child_environ(parent_pid: int) -> dict[str, str] | None:
    """The environment of the running `shared.jobs.training.job` child of `parent_pid`, read from /proc."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent_pid and b"shared.jobs.training.job" in cmdline:
            pairs = (item.decode(errors="replace").partition("=") for item in environ.split(b"\0") if item)
            return {name: value for name, _, value in pairs}
    return None


def test_the_training_process_inherits_no_secret_and_reports_its_model_digest(endpoint):
    """A real run with a tiny budget: while it trains, its environment (from /proc) holds none of the endpoint's
    token, storage key, Event Grid URL or other secrets; the model it reports carries its content digest."""
    from shared.scoring.model_digest import folder_digest

    client = endpoint["client"]
    run = client.submit(experiment="bank-test", parameters={"dataset_version": 1, "time_budget_s": 3},
                        data_paths=_data_paths(endpoint["container"], "bank/v1/data.csv"))
    environ = wait_for(lambda: _training_child_environ(endpoint["pid"]), timeout=120, every=0.05,
                       what="the training process")
    secrets = [TOKEN, "AccountKey=", "code=k", *OTHER_SECRETS.values()]
    assert not [s for s in secrets if any(s in value for value in environ.values())]
    assert not {"LOCAL_PIPELINE_TOKEN", "AzureWebJobsStorage", "EVENTGRID_WEBHOOK_URL", "MLFLOW_TRACKING_URI",
                *OTHER_SECRETS} & set(environ)
    assert environ.get("PATH")
    done = _wait(client, run.run_id)
    assert done.status == "Completed", done.raw
    model_dir = Path(done.outputs["model"]["Uri"].removeprefix("file://"))
    assert done.outputs["metrics"]["model_digest"] == folder_digest(model_dir)


def test_the_training_arguments_are_one_flag_value_token_each_and_validated_again(tmp_path):
    """The worker builds the job's argument list itself (no shell), `--flag=value` so no value reads as a flag, and
    re-validates what a run file says (a run stored before a pattern existed is not trusted either)."""
    from local.pipeline_endpoint import EndpointConfig, LocalRun, RunWorker
    from shared.domain.pipeline_params import ParameterError

    worker = RunWorker(EndpointConfig(token="t", runs_dir=tmp_path / "runs", storage_connection="", eventgrid_url=None))
    run = LocalRun(run_id="r1", pipeline_id="p", experiment="bankmarketing-retrain", data_paths={}, topic="t",
                   parameters={"time_budget_s": "7", "reason": "http", "trigger_id": "http-1-ab",
                               "champion_model": "/m/model", "champion_version": "2",
                               "champion_digest": "sha256:" + "c" * 64})
    argv = worker.job_arguments(run, tmp_path / "data.csv", tmp_path / "out")
    assert all(token.startswith("--") and "=" in token for token in argv)
    assert {"--budget-s=7", "--reason=http", "--trigger-id=http-1-ab", "--champion-model=/m/model",
            "--champion-version=2", "--champion-digest=sha256:" + "c" * 64} <= set(argv)
    for name, value in (("reason", "--out=/etc"), ("trigger_id", "--data=/etc/passwd"), ("drift_report", "a b")):
        tampered = LocalRun(**{**run.__dict__, "parameters": {**run.parameters, name: value}})
        with pytest.raises(ParameterError, match=name):
            worker.job_arguments(tampered, tmp_path / "data.csv", tmp_path / "out")
    with pytest.raises(ParameterError, match="experiment_name"):
        worker.job_arguments(LocalRun(**{**run.__dict__, "experiment": "x;id"}), tmp_path / "d", tmp_path / "o")
