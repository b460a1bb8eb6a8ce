"""Azure: what a finished training job produced — the model folder's URI and its metrics.json.

The run status APIs (v1 run GET, v2 job GET on ARM) say whether a run completed, not what it wrote. The training
step writes `model/` (the MLflow model) and `metrics.json` (out-of-fold and held-out figures) into its `model_dir`
output; the completion handler needs both. `JobOutputs` asks the workspace through `azure-ai-ml` (`jobs.get` for
the output's URI, `jobs.download(output_name=…)` for metrics.json); `WithJobOutputs` wraps a pipeline client so
`get_run()` of a completed run carries them as `Outputs` — the shape the local pipeline endpoint already answers.

The model's URI is the documented job-output form `azureml://jobs/<job>/outputs/<output>/paths/<path>` ("Supported
paths" for registering a model: https://learn.microsoft.com/azure/machine-learning/how-to-manage-models; azure-ai-ml
parses it with JOB_URI_FORMAT / JOB_URI_REGEX_FORMAT in azure/ai/ml/constants/_common.py), not the datastore path the
output happens to be written to: the registered model then records the job it came from, and the URI stays right
wherever the workspace puts job outputs.
"""

from __future__ import annotations

import json
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


class WithJobOutputs:
    """A pipeline client whose `get_run()` adds the job's outputs to completed runs that do not carry them."""

    def __init__(self, pipeline: Any, outputs: JobOutputs):
        self.inner, self._outputs = pipeline, outputs

    def submit(self, *, experiment: str, parameters: dict[str, Any],
               data_paths: dict[str, dict[str, str]] | None = None) -> PipelineRun:
        return self.inner.submit(experiment=experiment, parameters=parameters, data_paths=data_paths)

    def get_run(self, run_id: str) -> PipelineRun:
        run = self.inner.get_run(run_id)
        if run.status != PipelineStatus.COMPLETED or run.outputs.get("model"):
            return run
        return PipelineRun(run_id=run.run_id, status=run.status,
                           raw={**run.raw, "Outputs": {**run.outputs, **self._outputs.read(run_id)}})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
