"""Azure: what a finished training job produced — the model folder's URI and its metrics.json.

The run status APIs (v1 run GET, v2 job GET on ARM) say whether a run completed, not what it wrote. The training
step writes `model/` (the MLflow model) and `metrics.json` (out-of-fold and held-out figures) into its `model_dir`
output; the completion handler needs both. `JobOutputs` asks the workspace through `azure-ai-ml` (`jobs.get` for
the output's URI, `jobs.download(output_name=…)` for metrics.json); `LocalJobOutputs` reads the same from the local
pipeline endpoint's runs folder, resolving the same documented URI; `WithJobOutputs` wraps a pipeline client so
`get_run()` and `find_run()` of a completed run carry them as `Outputs`.

The model's URI is the documented job-output form `azureml://jobs/<job>/outputs/<output>/paths/<path>` ("Supported
paths" for registering a model: https://learn.microsoft.com/azure/machine-learning/how-to-manage-models; azure-ai-ml
parses it with JOB_URI_FORMAT / JOB_URI_REGEX_FORMAT in azure/ai/ml/constants/_common.py), not the datastore path the
output happens to be written to: the registered model then records the job it came from, and the URI stays right
wherever the workspace puts job outputs.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from shared.adapters.pipeline_client import PipelineRun
from shared.domain.outcomes import PipelineStatus

OUTPUT_NAME = "model_dir"
MODEL_PATH = "model"  # the MLflow model's folder inside the output (shared.jobs.training.job writes it there)


def job_output_uri(job_name: str, output_name: str = OUTPUT_NAME, path: str = MODEL_PATH) -> str:
    """`azureml://jobs/<job>/outputs/<output>/paths/<path>`, the documented URI of a file or folder in a job's named
    output (see the module docstring)."""
    return f"azureml://jobs/{job_name}/outputs/{output_name}/paths/{path.strip('/')}"


class JobOutputError(RuntimeError):
    pass


# `azureml://jobs/<job>/outputs/model_dir/paths/<path>`: a job name by the ARM name rule, relative path segments of
# plain characters (no empty, `.` or `..` segment).
_JOB_OUTPUT_URI = re.compile(r"azureml://jobs/(?P<job>[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254})/outputs/"
                             rf"{OUTPUT_NAME}/paths/(?P<path>[a-zA-Z0-9_\-.]+(?:/[a-zA-Z0-9_\-.]+)*)/?")


def resolve_job_output(uri: str, runs_dir: Path) -> Path:
    """The local folder a documented job-output URI names: `azureml://jobs/<job>/outputs/model_dir/paths/<path>` ->
    `<runs_dir>/<job>/outputs/<path>` (the local endpoint writes a run's `model_dir` output to `<job>/outputs`).
    Only that exact form is accepted, and the result must stay under `runs_dir`."""
    match = _JOB_OUTPUT_URI.fullmatch(uri)
    if match is None:
        raise JobOutputError(f"not a job-output URI of the form azureml://jobs/<job>/outputs/{OUTPUT_NAME}/paths/"
                             f"<path>: {uri!r}")
    segments = match["path"].split("/")
    if any(segment in (".", "..") for segment in segments):
        raise JobOutputError(f"a job-output path may not contain '.' or '..' segments: {uri!r}")
    root = runs_dir.resolve()
    resolved = root.joinpath(match["job"], "outputs", *segments).resolve()
    if not resolved.is_relative_to(root / match["job"] / "outputs"):
        raise JobOutputError(f"job-output URI leaves the runs folder: {uri!r}")
    return resolved


class JobOutputs:
    def __init__(self, ml_client: Any, *, output_name: str = OUTPUT_NAME):
        self._client = ml_client
        self.output_name = output_name

    def read(self, run_id: str) -> dict[str, Any]:
        """{"model": {"Uri": <model folder URI>}, "metrics": {...}} of a finished job."""
        job = self._client.jobs.get(run_id)
        if (getattr(job, "outputs", None) or {}).get(self.output_name) is None:
            raise JobOutputError(f"job {run_id} has no `{self.output_name}` output")
        with tempfile.TemporaryDirectory(prefix="job-outputs-") as tmp:
            self._client.jobs.download(name=run_id, download_path=tmp, output_name=self.output_name)
            found = sorted(Path(tmp).rglob("metrics.json"), key=lambda p: len(p.parts))
            if not found:
                raise JobOutputError(f"job {run_id}: no metrics.json in its `{self.output_name}` output")
            metrics = json.loads(found[0].read_text())
        return {"model": {"Uri": job_output_uri(getattr(job, "name", None) or run_id, self.output_name)},
                "metrics": metrics}


class LocalJobOutputs:
    """The local pipeline endpoint's job outputs, read as JobOutputs reads Azure's: the model addressed by the
    documented URI (resolved to `<runs_dir>/<job>/outputs/model`, answered as that folder's file URI, which the local
    deployer loads) and the metrics the training step reported in `<runs_dir>/<job>/outputs/status.json`, the file
    the endpoint itself reads to decide that the run completed (local/pipeline_endpoint/worker.py,
    RunWorker._execute)."""

    def __init__(self, runs_dir: Path, *, output_name: str = OUTPUT_NAME):
        self.runs_dir = Path(runs_dir)
        self.output_name = output_name

    def read(self, run_id: str) -> dict[str, Any]:
        """{"model": {"Uri": <file URI of the model folder>}, "metrics": {...}} of a finished job."""
        model = resolve_job_output(job_output_uri(run_id, self.output_name), self.runs_dir)
        if not model.is_dir():
            raise JobOutputError(f"job {run_id}: no model folder in its `{self.output_name}` output")
        status_file = model.parent / "status.json"
        try:
            metrics = json.loads(status_file.read_text()).get("metrics")
        except (OSError, ValueError, AttributeError):
            metrics = None
        if not isinstance(metrics, dict):
            raise JobOutputError(f"job {run_id}: no metrics in its `{self.output_name}` output's status.json")
        return {"model": {"Uri": model.as_uri()}, "metrics": metrics}


class WithJobOutputs:
    """A pipeline client whose `get_run()` and `find_run()` add the job's outputs to completed runs that do not
    carry them."""

    def __init__(self, pipeline: Any, outputs: JobOutputs | LocalJobOutputs):
        self.inner, self._outputs = pipeline, outputs

    def submit(self, *, experiment: str, parameters: dict[str, Any],
               data_paths: dict[str, dict[str, str]] | None = None) -> PipelineRun:
        return self.inner.submit(experiment=experiment, parameters=parameters, data_paths=data_paths)

    def get_run(self, run_id: str) -> PipelineRun:
        return self._with_outputs(self.inner.get_run(run_id))

    def find_run(self, trigger_id: str) -> PipelineRun | None:
        """The found run, with its outputs when it completed and they can be read. Unreadable outputs do not hide
        the run: the dispatcher only needs to know it exists to record it (a lookup error would keep the request
        unconfirmed for good), and the completion handler's `get_run` reports the missing outputs."""
        run = self.inner.find_run(trigger_id)
        if run is None:
            return None
        try:
            return self._with_outputs(run)
        except JobOutputError:
            return run

    def _with_outputs(self, run: PipelineRun) -> PipelineRun:
        if run.status != PipelineStatus.COMPLETED or run.outputs.get("model"):
            return run
        return PipelineRun(run_id=run.run_id, status=run.status,
                           raw={**run.raw, "Outputs": {**run.outputs, **self._outputs.read(run.run_id)}})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
