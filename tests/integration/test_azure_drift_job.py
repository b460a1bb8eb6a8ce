"""The partitioned drift job as an Azure ML v2 pipeline, built and validated offline with azure-ai-ml, and
submitted to an MLClient whose `jobs` operations are a recording double (no subscription needed)."""

from __future__ import annotations

import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from azure.ai.ml.entities import CommandComponent, PipelineComponent, PipelineJob

from local.processes import PROJECT_ROOT
from shared.jobs import drift_pipeline as azure_drift_job
from shared.jobs import publish as azure_publish

REFERENCE = "azureml://datastores/workspaceblobstore/paths/models/12/reference_profile.json"
WINDOW = "azureml://datastores/workspaceblobstore/paths/model_inputs/2025/01/"


@pytest.fixture(scope="module")
def code():
    return azure_publish.stage_code()


@pytest.fixture(scope="module")
def job(code):
    return azure_drift_job.build_drift_pipeline(3, "cpu-cluster", version="2", reference=REFERENCE, window=WINDOW,
                                                critical="age,euribor3m", code=code)


def _binding(value) -> str:
    """What a node input is bound to: a literal, or `${{parent...}}` for pipeline inputs / other nodes' outputs."""
    data = getattr(value, "_data", value)
    return data if isinstance(data, str | int | float) or data is None else str(data)


def test_three_profile_steps_and_one_merge(job):
    assert isinstance(job, PipelineJob)
    assert list(job.jobs) == ["profile_0", "profile_1", "profile_2", "merge"]
    assert job.settings.default_compute == "cpu-cluster"
    assert job.experiment_name == azure_drift_job.EXPERIMENT
    assert list(job.outputs) == ["result"]
    for i in range(3):
        step = job.jobs[f"profile_{i}"]
        assert step.component.name == azure_drift_job.PROFILE_COMPONENT and step.component.version == "2"
        assert _binding(step.inputs["partitions"]) == 3
        assert _binding(step.inputs["partition_index"]) == i
        assert _binding(step.inputs["reference"]) == "${{parent.inputs.reference}}"
        assert _binding(step.inputs["window"]) == "${{parent.inputs.window}}"
        assert list(step.outputs) == ["partial"]
    merge = job.jobs["merge"]
    assert merge.component.name == f"{azure_drift_job.MERGE_COMPONENT}_3"
    for i in range(3):
        assert _binding(merge.inputs[f"p{i}"]) == f"${{{{parent.jobs.profile_{i}.outputs.partial}}}}"
    assert _binding(merge.inputs["reference"]) == "${{parent.inputs.reference}}"
    assert _binding(merge.inputs["critical"]) == "${{parent.inputs.critical}}"
    as_dict = job._to_dict()
    assert as_dict["jobs"]["merge"]["outputs"] == {"result": "${{parent.outputs.result}}"}  # the pipeline's output
    assert as_dict["outputs"] == {"result": {"type": "uri_folder"}}
    assert job.inputs["reference"]._data.path == REFERENCE and job.inputs["reference"]._data.type == "uri_file"
    assert job.inputs["window"]._data.path == WINDOW and job.inputs["window"]._data.type == "uri_folder"
    assert _binding(job.inputs["critical"]) == "age,euribor3m"


def test_component_interfaces_and_types(job):
    profile = job.jobs["profile_0"].component
    assert isinstance(profile, CommandComponent)
    assert {n: i.type for n, i in profile.inputs.items()} == {
        "reference": "uri_file", "window": "uri_folder", "partitions": "integer", "partition_index": "integer",
        "datasets": "uri_folder", "manifest": "uri_file"}
    assert profile.inputs["datasets"].optional is True and profile.inputs["manifest"].optional is True
    assert {n: o.type for n, o in profile.outputs.items()} == {"partial": "uri_folder"}
    merge = job.jobs["merge"].component
    assert set(merge.inputs) == {"reference", "p0", "p1", "p2", "threshold", "share", "min_rows", "critical"}
    assert all(merge.inputs[f"p{i}"].type == "uri_folder" for i in range(3))
    assert merge.inputs["critical"].optional is True
    assert {n: o.type for n, o in merge.outputs.items()} == {"result": "uri_folder"}
    assert profile._validate().passed and merge._validate().passed


def test_commands_reference_every_input_and_output_and_the_job_accepts_the_flags(job):
    for node in ("profile_0", "merge"):
        component = job.jobs[node].component
        command = component.command
        for name in list(component.inputs) + list(component.outputs):
            kind = "inputs" if name in component.inputs else "outputs"
            assert f"${{{{{kind}.{name}}}}}" in command, (node, name)
    profile_cmd = job.jobs["profile_0"].component.command
    assert profile_cmd.startswith("python -m shared.jobs.drift_job profile ")
    assert "--out ${{outputs.partial}}" in profile_cmd
    assert "--partition-index ${{inputs.partition_index}}" in profile_cmd
    merge_cmd = job.jobs["merge"].component.command
    assert merge_cmd.startswith("python -m shared.jobs.drift_job merge ")
    assert "--partials ${{inputs.p0}} ${{inputs.p1}} ${{inputs.p2}} --out ${{outputs.result}}" in merge_cmd
    assert "$[[--critical ${{inputs.critical}}]]" in merge_cmd
    assert "$[[--datasets ${{inputs.datasets}}]] $[[--manifest ${{inputs.manifest}}]]" in profile_cmd
    for sub, command in (("profile", profile_cmd), ("merge", merge_cmd)):
        flags = set(re.findall(r"(--[a-z-]+) \$\{\{", command))
        help_text = subprocess.run([sys.executable, "-m", "shared.jobs.drift_job", sub, "--help"], cwd=PROJECT_ROOT,
                                   capture_output=True, text=True, timeout=60).stdout
        assert [f for f in sorted(flags) if f not in help_text] == [], sub


def test_code_and_environment_are_the_training_components(job, code):
    training = azure_publish.build_component(code, "2")
    for node in ("profile_0", "merge"):
        component = job.jobs[node].component
        assert str(component.code) == str(code)
        assert sorted(p.name for p in code.iterdir()) == ["shared"]
        assert (code / "shared" / "jobs" / "drift_job.py").exists()
        env = component.environment
        assert (env.name, env.image) == (training.environment.name, training.environment.image)
        assert env.conda_file == training.environment.conda_file


def test_pipeline_job_validates_offline(job):
    result = job._validate()
    assert result.passed, result.error_messages


def test_without_data_inputs_only_the_two_required_inputs_are_reported(code):
    bare = azure_drift_job.build_drift_pipeline(3, "cpu-cluster", code=code)
    result = bare._validate()
    assert not result.passed
    assert set(result.error_messages) == {"inputs.reference", "inputs.window"}


def test_pipeline_component_validates_offline(code):
    component = azure_drift_job.build_drift_pipeline_component(4, "cpu-cluster", code=code)
    assert isinstance(component, PipelineComponent)
    assert set(component.inputs) == {"reference", "window", "threshold", "share", "min_rows", "critical", "datasets",
                                     "manifest"}
    assert list(component.outputs) == ["result"]
    assert list(component.jobs) == ["profile_0", "profile_1", "profile_2", "profile_3", "merge"]
    assert component._validate().passed


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_partitions_must_be_a_positive_integer(bad, code):
    with pytest.raises(ValueError, match="partitions must be a positive integer"):
        azure_drift_job.build_drift_pipeline(bad, "cpu-cluster", code=code)


class RecordingMLClient:
    """MLClient with `jobs` replaced by a double that records what would be submitted."""

    def __init__(self):
        self.calls = []

        def create_or_update(job, **kwargs):
            self.calls.append(("jobs.create_or_update", job, kwargs))
            return SimpleNamespace(name="drift-job-1", status="NotStarted", studio_url="https://ml.azure.com/runs/1",
                                   entity=job)

        self.jobs = SimpleNamespace(create_or_update=create_or_update)


def test_submit_creates_the_job_through_ml_client(job):
    client = RecordingMLClient()
    created = azure_drift_job.submit_drift_job(client, job)
    assert [(name, kwargs) for name, _, kwargs in client.calls] == [("jobs.create_or_update", {})]
    assert client.calls[0][1] is job and created.entity is job and created.name == "drift-job-1"
