"""A drift window too large for one function execution is handed to a parallel profiling job.

The drift check (`shared.services.check_drift`) first sizes the window without reading it (`plan`: the collector
blobs of the window's hours and the dataset versions since training, with their sizes). Over the inline limit it
stages the job's inputs next to the reports (`drift-jobs/{check id}/reference_profile.json` and `manifest.json`,
the files the partitioned job (`shared.jobs.drift_job`) reads) and submits the job; a later tick asks for its state
and, once it completed, compares the merged profile (a few KB) with the reference.

Two job runners, the same job code:
- `AzureMLDriftJobs`: the Azure ML pipeline of `shared.jobs.drift_pipeline` (N profile steps on a compute cluster,
  one merge), inputs as https URIs of this storage account (the cluster's identity needs Storage Blob Data
  Reader on it); the merged profile is the `result` output's `current_profile.json`.
- `LocalDriftJobs`: a detached process on this machine that downloads the listed blobs and runs the N
  `profile` steps as parallel processes, then `merge` — what the local stack uses, so the hand-over is
  exercised end to end against Azurite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.child_env import minimal_env
from shared.domain.outcomes import JobStatus, PipelineStatus
from shared.domain.profile import REFERENCE_PROFILE, Profile
from shared.private_files import open_private_binary, private_dir

JOBS_PREFIX = "drift-jobs/"
MANIFEST = "manifest.json"
FAILED_STATES = ("Failed", "Canceled", "Cancelled", "NotResponding")
DRIFT_JOB = "shared.jobs.drift_job"  # the job steps' process entry, as the Azure ML pipeline runs them


@dataclass(frozen=True)
class WindowFile:
    root: str  # "window" (collector container) or "datasets" (dataset versions' container)
    path: str
    size: int


@dataclass(frozen=True)
class WindowPlan:
    since: float
    until: float
    files: tuple[WindowFile, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def manifest(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until,
                "files": [{"root": f.root, "path": f.path} for f in self.files]}


@dataclass(frozen=True)
class JobState:
    status: str  # a JobStatus: running | completed | failed
    profile: Profile | None = None
    detail: str = ""


@dataclass
class WindowStorage:
    """Where the window's files live and where job inputs are staged (three blob containers)."""

    inference: Any  # ContainerClient of the collector's blobs
    datasets: Any  # ContainerClient of the dataset versions
    reports: Any  # ContainerClient the reports (and staged job inputs) go to
    endpoint: str = ""  # the online endpoint whose deployments' collected model_inputs make the window

    def plan(self, since: float, until: float, dataset_paths: list[str]) -> WindowPlan:
        from shared.adapters.inference_data import window_blobs

        files = [WindowFile("window", b.name, int(b.size or 0))
                 for b in window_blobs(self.inference, self.endpoint, since, until)]
        for path in dataset_paths:
            size = self.datasets.get_blob_client(path).get_blob_properties().size
            files.append(WindowFile("datasets", path, int(size)))
        return WindowPlan(since, until, tuple(files))

    def stage(self, check_id: str, reference: Profile, plan: WindowPlan) -> dict[str, str]:
        """Upload the reference profile and the manifest; returns their blob names."""
        base = f"{JOBS_PREFIX}{check_id}/"
        names = {"reference": base + REFERENCE_PROFILE, "manifest": base + MANIFEST}
        self.reports.upload_blob(names["reference"], json.dumps(reference.to_dict()).encode(), overwrite=True)
        self.reports.upload_blob(names["manifest"], json.dumps(plan.manifest()).encode(), overwrite=True)
        return names

    def staged_reference(self, check_id: str) -> Profile:
        """The reference the job was given (the live model may have been replaced since)."""
        data = self.reports.download_blob(f"{JOBS_PREFIX}{check_id}/{REFERENCE_PROFILE}").readall()
        return Profile.from_dict(json.loads(data))


# ------------------------------------------------------------------------------------------------ Azure ML

@dataclass
class AzureMLDriftJobs:
    storage: WindowStorage
    ml_client: Any
    compute: str
    partitions: int = 8
    experiment: str = "bankmarketing-drift"
    code: Path | None = None
    name: str = field(default="azureml", init=False)

    def _uri(self, container, blob: str = "") -> str:
        return f"{container.url.rstrip('/')}/{blob}".rstrip("/")

    def submit(self, check_id: str, reference: Profile, plan: WindowPlan, policy) -> str:
        from shared.jobs.drift_pipeline import build_drift_pipeline

        names = self.storage.stage(check_id, reference, plan)
        job = build_drift_pipeline(
            self.partitions, self.compute, reference=self._uri(self.storage.reports, names["reference"]),
            window=self._uri(self.storage.inference), datasets=self._uri(self.storage.datasets),
            manifest=self._uri(self.storage.reports, names["manifest"]), threshold=policy.threshold,
            share=policy.share, min_rows=policy.min_rows, critical=",".join(policy.critical) or None,
            code=self.code, experiment_name=self.experiment)
        created = self.ml_client.jobs.create_or_update(job)
        return str(created.name)

    def result(self, job_id: str) -> JobState:
        job = self.ml_client.jobs.get(job_id)
        status = str(getattr(job, "status", "") or "")
        if status in FAILED_STATES:
            return JobState(JobStatus.FAILED, detail=f"Azure ML job {job_id} ended {status}")
        if status != PipelineStatus.COMPLETED:
            return JobState(JobStatus.RUNNING, detail=status)
        with tempfile.TemporaryDirectory(prefix="drift-job-") as tmp:
            self.ml_client.jobs.download(name=job_id, download_path=tmp, output_name="result")
            found = sorted(Path(tmp).rglob("current_profile.json"), key=lambda p: len(p.parts))
            if not found:
                return JobState(JobStatus.FAILED,
                                detail=f"Azure ML job {job_id}: no current_profile.json in its output")
            return JobState(JobStatus.COMPLETED, Profile.load(found[0]))


# --------------------------------------------------------------------------------------------------- local

_children: list[subprocess.Popen] = []


@dataclass
class LocalDriftJobs:
    """Runs the job as a detached process; its folder holds status.json and the merged profile."""

    storage: WindowStorage
    work_dir: Path
    partitions: int = 4
    # The storage connection for the job process: all it gets besides the allowlisted basics (shared.child_env),
    # not the host's keys, tokens or other app settings.
    env: dict[str, str] = field(default_factory=dict)
    name: str = field(default="local", init=False)

    def submit(self, check_id: str, reference: Profile, plan: WindowPlan, policy) -> str:
        names = self.storage.stage(check_id, reference, plan)
        job_id = f"local-{check_id}"
        private_dir(self.work_dir)  # drift-jobs/: 0700, also when it exists
        job_dir = private_dir(Path(self.work_dir) / job_id)
        _write_status(job_dir, JobStatus.RUNNING)
        argv = [sys.executable, "-m", "shared.adapters.drift_offload", "--job-dir", str(job_dir),
                "--partitions", str(self.partitions), "--inference", self.storage.inference.container_name,
                "--datasets", self.storage.datasets.container_name, "--reports",
                self.storage.reports.container_name, "--reference", names["reference"], "--manifest",
                names["manifest"]]
        log = open_private_binary(job_dir / "job.log")  # 0600; handed to the child
        _children[:] = [c for c in _children if c.poll() is None]
        _children.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                          cwd=Path(__file__).resolve().parents[2], env=minimal_env(self.env)))
        log.close()
        return job_id

    def result(self, job_id: str) -> JobState:
        _children[:] = [c for c in _children if c.poll() is None]  # reap finished children
        status_file = Path(self.work_dir) / job_id / "status.json"
        if not status_file.is_file():
            return JobState(JobStatus.FAILED, detail=f"local drift job {job_id} is unknown here (no {status_file})")
        status = json.loads(status_file.read_text())
        if status["status"] == JobStatus.COMPLETED:
            return JobState(JobStatus.COMPLETED, Profile.load(Path(self.work_dir) / job_id / "result" /
                                                      "current_profile.json"))
        return JobState(status["status"], detail=status.get("detail", ""))


def _write_status(job_dir: Path, status: str, detail: str = "") -> None:
    tmp = job_dir / "status.json.tmp"
    tmp.write_text(json.dumps({"status": status, "detail": detail, "at": time.time()}))
    tmp.replace(job_dir / "status.json")


def _download(container, name: str, to: Path) -> None:
    to.parent.mkdir(parents=True, exist_ok=True)
    with open(to, "wb") as fh:
        container.download_blob(name).readinto(fh)


def run_local_job(args: argparse.Namespace, connection: str | None = None) -> int:
    """The job process: fetch the inputs, N `profile` processes in parallel, then `merge`. The storage
    connection comes from the environment (`AzureWebJobsStorage`), never from the command line."""
    from azure.storage.blob import BlobServiceClient

    job_dir = Path(args.job_dir)
    try:
        service = BlobServiceClient.from_connection_string(connection or os.environ["AzureWebJobsStorage"])
        reports = service.get_container_client(args.reports)
        _download(reports, args.reference, job_dir / "in" / REFERENCE_PROFILE)
        _download(reports, args.manifest, job_dir / "in" / MANIFEST)
        manifest = json.loads((job_dir / "in" / MANIFEST).read_text())
        containers = {"window": service.get_container_client(args.inference),
                      "datasets": service.get_container_client(args.datasets)}
        for entry in manifest["files"]:
            _download(containers[entry["root"]], entry["path"], job_dir / entry["root"] / entry["path"])
        common = ["--reference", str(job_dir / "in" / REFERENCE_PROFILE)]
        steps = [subprocess.Popen([sys.executable, "-m", DRIFT_JOB, "profile", *common, "--inputs",
                                   str(job_dir / "window"), "--datasets", str(job_dir / "datasets"),
                                   "--manifest", str(job_dir / "in" / MANIFEST), "--partitions",
                                   str(args.partitions), "--partition-index", str(i), "--out",
                                   str(job_dir / f"p{i}")], stderr=subprocess.PIPE, text=True,
                                  env=minimal_env())  # the steps read local files: no storage connection
                 for i in range(args.partitions)]
        errors = [(p.communicate()[1] or "").strip() for p in steps if p.wait() != 0]
        if errors:
            raise RuntimeError(f"profile step failed: {errors[0].splitlines()[-1] if errors[0] else 'no output'}")
        merge = subprocess.run([sys.executable, "-m", DRIFT_JOB, "merge", *common, "--partials",
                                *[str(job_dir / f"p{i}") for i in range(args.partitions)], "--out",
                                str(job_dir / "result")], capture_output=True, text=True, env=minimal_env())
        if merge.returncode != 0:
            raise RuntimeError(f"merge step failed: {merge.stderr.strip()}")
    except Exception as exc:  # the job's own failure, reported through status.json
        _write_status(job_dir, JobStatus.FAILED, f"{type(exc).__name__}: {exc}"[:500])
        return 1
    _write_status(job_dir, JobStatus.COMPLETED)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.adapters.drift_offload",
                                     description="run a handed-over drift window locally (the local stack's job)")
    for flag in ("--job-dir", "--inference", "--datasets", "--reports", "--reference", "--manifest"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--partitions", type=int, default=4)
    return run_local_job(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
