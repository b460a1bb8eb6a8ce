"""Azure job outputs read through a recording azure-ai-ml double: the model URI and metrics.json of a job."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared.adapters.job_outputs import JobOutputError, JobOutputs, WithJobOutputs
from shared.adapters.pipeline_client import PipelineRun

URI = "azureml://subscriptions/s/resourcegroups/r/workspaces/w/datastores/workspaceblobstore/paths/azureml/j1/model_dir"


class Jobs:
    """jobs.get / jobs.download as azure-ai-ml 1.35 lays them out (download_path/named-outputs/<output>/...)."""

    def __init__(self, metrics: dict | None):
        self.calls: list[tuple] = []
        self.metrics = metrics

    def get(self, name):
        self.calls.append(("get", name))
        return SimpleNamespace(name=name, outputs={"model_dir": SimpleNamespace(path=URI + "/", type="uri_folder")})

    def download(self, name, *, download_path=".", output_name=None, all=False):  # noqa: A002 - the SDK's name
        self.calls.append(("download", name, output_name))
        folder = Path(download_path) / "named-outputs" / output_name
        (folder / "model").mkdir(parents=True)
        if self.metrics is not None:
            (folder / "metrics.json").write_text(json.dumps(self.metrics))


class Pipeline:
    def __init__(self, status="Completed", raw=None):
        self.status, self.raw = status, raw or {}

    def get_run(self, run_id):
        return PipelineRun(run_id=run_id, status=self.status, raw=dict(self.raw))

    def submit(self, **kwargs):
        return PipelineRun(run_id="new", status="NotStarted")


def test_a_completed_job_gets_its_model_uri_and_metrics():
    metrics = {"auc": 0.95, "evaluation_slice": {"challenger": {"auc": 0.94}}}
    jobs = Jobs(metrics)
    client = WithJobOutputs(Pipeline(), JobOutputs(SimpleNamespace(jobs=jobs)))
    run = client.get_run("j1")
    # the documented job-output form, not the datastore path the output was written to
    assert run.outputs["model"] == {"Uri": "azureml://jobs/j1/outputs/model_dir/paths/model"}
    assert run.outputs["metrics"] == metrics
    assert jobs.calls == [("get", "j1"), ("download", "j1", "model_dir")]
    assert client.submit(experiment="e", parameters={}).run_id == "new"


def test_runs_not_completed_or_already_carrying_outputs_are_left_alone():
    jobs = Jobs({})
    running = WithJobOutputs(Pipeline(status="Running"), JobOutputs(SimpleNamespace(jobs=jobs))).get_run("j")
    local = WithJobOutputs(Pipeline(raw={"Outputs": {"model": {"Uri": "file:///m"}}}),
                           JobOutputs(SimpleNamespace(jobs=jobs))).get_run("j")
    assert running.outputs == {} and local.outputs["model"]["Uri"] == "file:///m" and jobs.calls == []


def test_a_job_without_metrics_is_a_clear_error():
    with pytest.raises(JobOutputError, match="no metrics.json in its `model_dir` output"):
        JobOutputs(SimpleNamespace(jobs=Jobs(None))).read("j2")


def test_a_job_without_the_output_is_a_clear_error():
    jobs = Jobs({})
    jobs.get = lambda name: SimpleNamespace(name=name, outputs={})
    with pytest.raises(JobOutputError, match="job j3 has no `model_dir` output"):
        JobOutputs(SimpleNamespace(jobs=jobs)).read("j3")
