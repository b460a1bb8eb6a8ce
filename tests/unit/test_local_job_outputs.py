"""Local job outputs: the documented `azureml://jobs/<job>/outputs/model_dir/paths/model` URI resolved to the local
endpoint's runs folder (only that form, never outside it), and read in the same shape as Azure's JobOutputs."""

from __future__ import annotations

import json

import pytest

from shared.adapters.job_outputs import (
    JobOutputError,
    LocalJobOutputs,
    WithJobOutputs,
    job_output_uri,
    resolve_job_output,
)
from shared.adapters.pipeline_client import PipelineRun


def test_the_documented_uri_resolves_under_the_runs_folder(tmp_path):
    assert resolve_job_output(job_output_uri("retrain-blob-1"), tmp_path) == \
        (tmp_path / "retrain-blob-1" / "outputs" / "model").resolve()
    assert resolve_job_output("azureml://jobs/j1/outputs/model_dir/paths/model/MLmodel", tmp_path) == \
        (tmp_path / "j1" / "outputs" / "model" / "MLmodel").resolve()


@pytest.mark.parametrize("uri", [
    "azureml://jobs/j1/outputs/model_dir/paths/../../j2/outputs/model",
    "azureml://jobs/j1/outputs/model_dir/paths/./model",
    "azureml://jobs/../outputs/model_dir/paths/model",
    "azureml://jobs/j1/outputs/other/paths/model",
    "azureml://jobs/j1/outputs/model_dir/paths//model",
    "azureml://jobs/j1/outputs/model_dir/paths/",
    "azureml://datastores/workspaceblobstore/paths/azureml/j1/model_dir/model",
    "file:///etc/passwd",
    "azureml://jobs/j1/outputs/model_dir/paths/model\n",
    "azureml://jobs/-j1/outputs/model_dir/paths/model",
])
def test_any_other_form_is_refused(uri, tmp_path):
    with pytest.raises(JobOutputError):
        resolve_job_output(uri, tmp_path)


def test_a_symlink_leaving_the_runs_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    runs = tmp_path / "runs"
    (runs / "j1" / "outputs").mkdir(parents=True)
    (runs / "j1" / "outputs" / "model").symlink_to(outside)
    with pytest.raises(JobOutputError, match="leaves the runs folder"):
        resolve_job_output(job_output_uri("j1"), runs)


def _completed_run(runs, job, metrics):
    outputs = runs / job / "outputs"
    (outputs / "model").mkdir(parents=True)
    (outputs / "status.json").write_text(json.dumps({"status": "Completed", "metrics": metrics}))


def test_a_completed_local_job_reads_like_an_azure_one(tmp_path):
    metrics = {"auc": 0.93, "evaluation_slice": {"challenger": {"auc": 0.92}}}
    _completed_run(tmp_path, "retrain-blob-1", metrics)
    read = LocalJobOutputs(tmp_path).read("retrain-blob-1")
    assert read == {"model": {"Uri": (tmp_path / "retrain-blob-1" / "outputs" / "model").resolve().as_uri()},
                    "metrics": metrics}


def test_a_job_without_model_or_metrics_is_a_clear_error(tmp_path):
    with pytest.raises(JobOutputError, match="no model folder"):
        LocalJobOutputs(tmp_path).read("j-missing")
    (tmp_path / "j2" / "outputs" / "model").mkdir(parents=True)
    with pytest.raises(JobOutputError, match="no metrics"):
        LocalJobOutputs(tmp_path).read("j2")


class Pipeline:
    def __init__(self, found):
        self.found = found

    def find_run(self, trigger_id):
        return self.found


def test_with_job_outputs_forwards_find_run_adding_outputs_when_completed(tmp_path):
    _completed_run(tmp_path, "retrain-t1", {"auc": 0.9})
    done = WithJobOutputs(Pipeline(PipelineRun("retrain-t1", "Completed")), LocalJobOutputs(tmp_path))
    assert done.find_run("t1").outputs["metrics"] == {"auc": 0.9}
    running = WithJobOutputs(Pipeline(PipelineRun("retrain-t2", "Running")), LocalJobOutputs(tmp_path))
    assert running.find_run("t2").outputs == {}
    assert WithJobOutputs(Pipeline(None), LocalJobOutputs(tmp_path)).find_run("t3") is None


def test_find_run_still_reports_a_completed_run_whose_outputs_cannot_be_read(tmp_path):
    """The dispatcher records the run; get_run (the completion handler's call) is where the missing outputs fail."""
    broken = WithJobOutputs(Pipeline(PipelineRun("retrain-t4", "Completed")), LocalJobOutputs(tmp_path))
    found = broken.find_run("t4")
    assert found.run_id == "retrain-t4" and found.outputs == {}
