"""The drift check of a large window as an Azure ML (v2) pipeline job: N parallel `profile` steps, one `merge`.

Each `profile` step runs `python -m shared.jobs.drift_job profile` on partition i of the window folder (file k belongs
to partition k % N) and writes `partial-i.json`; the `merge` step takes the N partial folders (inputs
`p0`..`p{N-1}`), merges them into the profile of the whole window and compares it with the reference, writing
`current_profile.json` and `drift.json` to its `result` output. The code is the `shared/` package and the
environment the training component's (both from `shared.jobs.environment`). Building the job needs no
subscription; `submit_drift_job` is the one call that talks to Azure. (No `from __future__ import annotations`: the
dsl reads the pipeline function's `Input(...)` annotations as objects.)
"""

from pathlib import Path
from typing import Any

from shared.jobs.environment import environment, stage_code

PROFILE_COMPONENT = "bankmarketing_drift_profile"
MERGE_COMPONENT = "bankmarketing_drift_merge"
PIPELINE_NAME = "bankmarketing_drift"
EXPERIMENT = "bankmarketing-drift"


def profile_command() -> str:
    return ("python -m shared.jobs.drift_job profile --reference ${{inputs.reference}} --inputs ${{inputs.window}} "
            "--partitions ${{inputs.partitions}} --partition-index ${{inputs.partition_index}} "
            "--out ${{outputs.partial}} $[[--datasets ${{inputs.datasets}}]] $[[--manifest ${{inputs.manifest}}]]")


def merge_command(partitions: int) -> str:
    partials = " ".join(f"${{{{inputs.p{i}}}}}" for i in range(partitions))
    return ("python -m shared.jobs.drift_job merge --reference ${{inputs.reference}} "
            f"--partials {partials} --out ${{{{outputs.result}}}} "
            "--threshold ${{inputs.threshold}} --share ${{inputs.share}} --min-rows ${{inputs.min_rows}} "
            "$[[--critical ${{inputs.critical}}]]")


def build_profile_component(code: Path, version: str, env=None):
    from azure.ai.ml import Input, Output, command

    job = command(name=PROFILE_COMPONENT, display_name="Profile one partition of the drift window", version=version,
                  description="Profile the partition's CSV / collector JSONL files on the reference's bin edges",
                  code=str(code), command=profile_command(), environment=env or environment(),
                  inputs={"reference": Input(type="uri_file", description="reference profile JSON"),
                          "window": Input(type="uri_folder", description="*.csv / *.jsonl files of the window"),
                          "partitions": Input(type="integer", min=1, description="number of partitions"),
                          "partition_index": Input(type="integer", min=0, description="this step's partition"),
                          "datasets": Input(type="uri_folder", optional=True,
                                            description="the dataset versions' folder (manifest root `datasets`)"),
                          "manifest": Input(type="uri_file", optional=True,
                                            description="the window's files and [since, until) (drift check)")},
                  outputs={"partial": Output(type="uri_folder", description="partial-<index>.json")})
    return job.component


def build_merge_component(code: Path, version: str, partitions: int, env=None):
    from azure.ai.ml import Input, Output, command

    inputs: dict[str, Any] = {"reference": Input(type="uri_file", description="reference profile JSON")}
    for i in range(partitions):
        inputs[f"p{i}"] = Input(type="uri_folder", description=f"partial profile of partition {i}")
    inputs.update(threshold=Input(type="number", default=0.1, description="per-column drift threshold"),
                  share=Input(type="number", default=0.5, description="share of drifted columns that is a drift"),
                  min_rows=Input(type="integer", default=100, min=1, description="rows needed on each side"),
                  critical=Input(type="string", optional=True, description="comma-separated critical columns"))
    # The merge component's interface depends on N (inputs p0..p{N-1}), so N is part of its name.
    job = command(name=f"{MERGE_COMPONENT}_{partitions}", display_name=f"Merge {partitions} partial profiles",
                  version=version, description="Merge the partial profiles and compare with the reference",
                  code=str(code), command=merge_command(partitions), environment=env or environment(),
                  inputs=inputs,
                  outputs={"result": Output(type="uri_folder", description="current_profile.json and drift.json")})
    return job.component


def _pipeline_function(partitions: int, compute: str, version: str, code: Path | None):
    from azure.ai.ml import Input, dsl

    if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
        raise ValueError(f"partitions must be a positive integer, got {partitions!r}")
    code = code or stage_code()
    env = environment()
    profile = build_profile_component(code, version, env)
    merge = build_merge_component(code, version, partitions, env)

    @dsl.pipeline(name=PIPELINE_NAME, description=f"Drift check of a window profiled in {partitions} partitions",
                  default_compute=compute)
    def drift_pipeline(reference: Input(type="uri_file"), window: Input(type="uri_folder"),
                       threshold: Input(type="number") = 0.1, share: Input(type="number") = 0.5,
                       min_rows: Input(type="integer", min=1) = 100,
                       critical: Input(type="string", optional=True) = None,
                       datasets: Input(type="uri_folder", optional=True) = None,
                       manifest: Input(type="uri_file", optional=True) = None):
        partials = {}
        for i in range(partitions):
            step = profile(reference=reference, window=window, partitions=partitions, partition_index=i,
                           datasets=datasets, manifest=manifest)
            step.name = f"profile_{i}"
            partials[f"p{i}"] = step.outputs.partial
        merged = merge(reference=reference, threshold=threshold, share=share, min_rows=min_rows, critical=critical,
                       **partials)
        merged.name = "merge"
        return {"result": merged.outputs.result}

    return drift_pipeline


def build_drift_pipeline(partitions: int, compute: str, version: str = "1", *, reference: str | None = None,
                         window: str | None = None, threshold: float = 0.1, share: float = 0.5,
                         min_rows: int = 100, critical: str | None = None, code: Path | None = None,
                         experiment_name: str = EXPERIMENT, datasets: str | None = None, manifest: str | None = None):
    """A PipelineJob: `partitions` parallel profile steps (`profile_0`..) feeding one `merge` step.

    `reference` (a reference_profile.json) and `window` (a folder of *.csv / collector *.jsonl files) are paths
    or URIs Azure ML accepts (`azureml://datastores/...`, `azureml:name:version`, https, or a local path, which
    is uploaded on submit). Both are required inputs: without them the job is built but does not validate.
    `datasets` and `manifest` are what the drift check passes when it hands a window over (see drift_job)."""
    from azure.ai.ml import Input

    drift_pipeline = _pipeline_function(partitions, compute, version, code)
    job = drift_pipeline(reference=None if reference is None else Input(type="uri_file", path=str(reference)),
                         window=None if window is None else Input(type="uri_folder", path=str(window)),
                         threshold=threshold, share=share, min_rows=min_rows, critical=critical,
                         datasets=None if datasets is None else Input(type="uri_folder", path=str(datasets)),
                         manifest=None if manifest is None else Input(type="uri_file", path=str(manifest)))
    job.experiment_name = experiment_name
    return job


def build_drift_pipeline_component(partitions: int, compute: str, version: str = "1", *,
                                   code: Path | None = None):
    """The same graph as a PipelineComponent (inputs unbound), e.g. to register or deploy it."""
    return _pipeline_function(partitions, compute, version, code)._pipeline_builder.build()


def submit_drift_job(ml_client, job):
    """Submit the pipeline job; returns the created job (its `name` and `studio_url`)."""
    return ml_client.jobs.create_or_update(job)
