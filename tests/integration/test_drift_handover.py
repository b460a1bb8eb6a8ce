"""A drift window over the inline limit is handed to the partitioned profiling job and concluded when the job ends.

Real Azurite, real collector blobs, the real local job (a detached process running `shared.jobs.drift_job` steps in
parallel); the Azure ML runner against a recording MLClient double (the control plane is not reachable here)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from shared.adapters import storage
from shared.adapters.credentials import StaticTokenCredential
from shared.adapters.drift_offload import AzureMLDriftJobs, JobState, LocalDriftJobs, WindowStorage, run_local_job
from shared.adapters.outbox import Outbox
from shared.adapters.pipeline_client import PublishedPipelineClient
from shared.bootstrap import build_stores, inference_reader, report_writer
from shared.domain import collected_data, schema
from shared.domain.collected_data import Collection
from shared.domain.profile import REFERENCE_PROFILE, Profile, build_profile
from shared.domain.validation import canonical_csv, content_hash
from shared.services.check_drift import DriftCheck, DriftPolicy, check_drift, resume_drift_checks
from shared.services.retrain import PipelineTarget, RetrainDispatch
from tests.isolation import isolated_settings
from tests.waiting import wait_for

SUBMIT = "/pipelines/v1.0/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/" \
         "workspaces/w/PipelineRuns/PipelineSubmit/p1"
ENDPOINT = "bankmarketing-scoring"
TARGET = PipelineTarget(experiment="exp", datastore="workspaceblobstore", data_input="training_data", budget_s=5)
INLINE = DriftPolicy(min_rows=200, cooldown_s=3600, critical=("euribor3m",))
HANDED_OVER = DriftPolicy(min_rows=200, cooldown_s=3600, critical=("euribor3m",), inline_max_bytes=1,
                          job_timeout_s=600)


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in ("emp.var.rate", "euribor3m", "nr.employed", "cons.price.idx"):
        out[column] = out[column] + 3 * out[column].std()
    out["contact"] = "telephone"
    return out


def collector_blob(container, at: float, records: list[dict]) -> None:
    """Batches of 50 rows a line, in Azure ML's data collector layout and envelope (shared.domain.collected_data)."""
    lines = [json.dumps(collected_data.envelope(Collection.MODEL_INPUTS, source="s", at=at, rows=records[i:i + 50],
                                                correlation_id=str(i), agent="test"))
             for i in range(0, len(records), 50)]
    container.upload_blob(collected_data.blob_name(ENDPOINT, "blue", Collection.MODEL_INPUTS, at),
                          ("\n".join(lines) + "\n").encode())


@pytest.fixture
def env(azurite, httpserver, small_bank_csv, tmp_path):
    settings = isolated_settings(azurite)
    blobs = storage.blob_service(settings)
    names = {"inference": settings.inference_container, "reports": settings.reports_container,
             "datasets": settings.datasets_container}
    for name in names.values():
        storage.ensure_container(blobs, name)
    containers = {k: blobs.get_container_client(v) for k, v in names.items()}
    stores = build_stores(settings)
    frame = pd.read_csv(small_bank_csv)
    data = canonical_csv(frame)
    first = stores.datasets.register(data, content_hash=content_hash(data), rows=len(frame), columns=21,
                                     source_blob="t/first.csv", source_etag="e", dialect="comma")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    build_profile(frame).save(model_dir / REFERENCE_PROFILE)
    model = stores.models.register(run_id="run-0", dataset_version=first.version, model_dir=str(model_dir),
                                   metrics={})
    stores.models.set_live(model.version)
    window = WindowStorage(inference=containers["inference"], datasets=containers["datasets"],
                           reports=containers["reports"], endpoint=ENDPOINT)
    return SimpleNamespace(
        stores=stores, frame=frame, containers=containers, window=window, azurite=azurite, tmp=tmp_path,
        outbox=Outbox(storage.ensure_table(storage.table_service(settings), settings.outbox_table)),
        pipeline=PublishedPipelineClient(httpserver.url_for(SUBMIT), StaticTokenCredential("t"), max_retries=0))


def drift_check(env, policy, offload) -> DriftCheck:
    s = env.stores
    retrain = RetrainDispatch(outbox=env.outbox, runs=s.runs, pipeline=env.pipeline, datasets=s.datasets,
                              audit=s.audit, models=s.models, target=TARGET)
    return DriftCheck(policy=policy, retrain=retrain, inference=inference_reader(env.containers["inference"], ENDPOINT),
                      reports=report_writer(env.containers["reports"]), offload=offload)


def check(env, policy, offload, now: float):
    return check_drift(drift_check(env, policy, offload), past_due=False, now=now)


def resume(env, policy, offload, now: float):
    return resume_drift_checks(drift_check(env, policy, offload), now=now)


def local_jobs(env, partitions=3) -> LocalDriftJobs:
    return LocalDriftJobs(env.window, env.tmp / "jobs", partitions=partitions, env={"AzureWebJobsStorage": env.azurite})


class StagedOnly(LocalDriftJobs):
    """Stages inputs like the local runner but starts nothing: the job stays `running` until the test runs it."""

    def submit(self, check_id, reference, plan, policy):
        self.staged = self.storage.stage(check_id, reference, plan)
        job_id = f"local-{check_id}"
        (Path(self.work_dir) / job_id).mkdir(parents=True)
        (Path(self.work_dir) / job_id / "status.json").write_text(json.dumps({"status": "running"}))
        return job_id

    def run_now(self, job_id):
        args = SimpleNamespace(job_dir=str(Path(self.work_dir) / job_id), partitions=self.partitions,
                               inference=self.storage.inference.container_name,
                               datasets=self.storage.datasets.container_name,
                               reports=self.storage.reports.container_name, **self.staged)
        return run_local_job(args, connection=self.env["AzureWebJobsStorage"])


def fill_window(env, live_at: float) -> None:
    """Collected inputs (drifted), one blob partly before the live model went live, and a newer labelled upload."""
    drifted = shifted(env.frame)
    records = drifted[list(schema.FEATURES)].head(1200).to_dict("records")
    for i in range(0, len(records), 300):
        collector_blob(env.containers["inference"], live_at + 5 + i, records[i:i + 300])
    collector_blob(env.containers["inference"], live_at - 1, env.frame[list(schema.FEATURES)].head(400)
                   .to_dict("records"))  # just before the model went live: its lines are outside the window
    data = canonical_csv(drifted.tail(800))
    env.stores.datasets.register(data, content_hash=content_hash(data), rows=800, columns=21,
                                 source_blob="t/newer.csv", source_etag="e2", dialect="comma")


def test_the_handed_over_window_gives_the_inline_verdict_and_scores(env, httpserver):
    live_at = env.stores.models.live().registered_at
    fill_window(env, live_at)
    now = live_at + 3600 * 3
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_json({"Id": "drift-run"})
    inline = check(env, INLINE, None, now=now)  # offload None: every window is profiled here
    assert inline.outcome == "submitted", inline.detail  # drifted, with newer labelled data

    runner = local_jobs(env)
    handed = check(env, HANDED_OVER, runner, now=now)
    assert handed.outcome == "profiling", handed.detail
    job = handed.data["offload"]["job"]
    assert job == f"local-{handed.id}" and "over the inline limit" in handed.detail
    same_hour = int(live_at - 1) // 3600 == int(live_at) // 3600
    # 4 collector blobs + the one written just before `since` (listed by its hour, its lines dropped) + 1 dataset
    assert handed.data["window"]["files"] == (6 if same_hour else 5)
    staged = env.containers["reports"].download_blob(f"drift-jobs/{handed.id}/manifest.json").readall()
    manifest = json.loads(staged)
    assert manifest["since"] == pytest.approx(live_at) and {f["root"] for f in manifest["files"]} == \
        {"window", "datasets"}

    wait_for(lambda: runner.result(job).status != "running", timeout=120, what="the local profiling job")
    state = runner.result(job)
    assert state.status == "completed", state.detail
    assert state.profile.rows == inline.data["drift"]["rows"]["current"] == 1200 + 800

    assert resume(env, HANDED_OVER, runner, now=now) == []
    done = env.stores.audit.get(handed.id)
    assert done.outcome == "skipped" and "already in flight" in done.detail, done.detail  # the inline one's run
    assert done.data["drift"]["verdict"] == inline.data["drift"]["verdict"]
    assert done.data["drift"]["scores"] == pytest.approx(inline.data["drift"]["scores"], rel=1e-9)
    assert done.data["drift"]["drifted_columns"] == inline.data["drift"]["drifted_columns"]
    assert done.data["drift"]["drifted"] is True and done.data["report"].endswith(f"{handed.id}.html")
    assert done.finished_at is not None and {"profiling", "profiled", "checked"} <= set(done.stages)
    assert resume(env, HANDED_OVER, runner, now=now) == []  # concluded once
    assert env.stores.audit.get(handed.id).finished_at == done.finished_at


def test_a_running_job_makes_later_checks_wait_and_an_overdue_one_fails(env):
    live_at = env.stores.models.live().registered_at
    fill_window(env, live_at)
    runner = StagedOnly(env.window, env.tmp / "jobs", partitions=2, env={"AzureWebJobsStorage": env.azurite})
    first = check(env, HANDED_OVER, runner, now=live_at + 60)
    assert first.outcome == "profiling"
    second = check(env, HANDED_OVER, runner, now=live_at + 120)
    assert second.outcome == "skipped" and f"job {first.data['offload']['job']}" in second.detail
    late = resume(env, HANDED_OVER, runner, now=live_at + 60 + HANDED_OVER.job_timeout_s + 1)
    assert late == []
    failed = env.stores.audit.get(first.id)
    assert failed.outcome == "failed" and "did not finish within 600 s" in failed.detail


def test_a_failed_job_fails_the_check_with_its_reason(env):
    live_at = env.stores.models.live().registered_at
    fill_window(env, live_at)
    runner = StagedOnly(env.window, env.tmp / "jobs", partitions=2, env={"AzureWebJobsStorage": env.azurite})
    record = check(env, HANDED_OVER, runner, now=live_at + 60)
    env.containers["inference"].delete_blob(runner.storage.plan(live_at, live_at + 60, []).files[0].path)
    assert runner.run_now(record.data["offload"]["job"]) == 1  # a listed blob vanished
    resume(env, HANDED_OVER, runner, now=live_at + 61)
    failed = env.stores.audit.get(record.id)
    assert failed.outcome == "failed" and "profiling job" in failed.detail and "BlobNotFound" in failed.detail


def test_a_model_replaced_while_profiling_is_not_compared_with_the_old_reference(env):
    live_at = env.stores.models.live().registered_at
    fill_window(env, live_at)
    runner = StagedOnly(env.window, env.tmp / "jobs", partitions=2, env={"AzureWebJobsStorage": env.azurite})
    record = check(env, HANDED_OVER, runner, now=live_at + 60)
    assert runner.run_now(record.data["offload"]["job"]) == 0
    newer = env.stores.models.register(run_id="run-1", dataset_version=2, model_dir="", metrics={})
    env.stores.models.set_live(newer.version)
    resume(env, HANDED_OVER, runner, now=live_at + 61)
    skipped = env.stores.audit.get(record.id)
    assert skipped.outcome == "skipped" and "live model changed (v1 -> v2)" in skipped.detail


def test_small_windows_stay_inline_even_with_a_runner(env, httpserver):
    live_at = env.stores.models.live().registered_at
    fill_window(env, live_at)
    record = check(env, INLINE, local_jobs(env), now=live_at + 1000)  # 256 MB limit: a few hundred KB stays here
    assert record.outcome == "queued" and "submit attempt 1 failed (PipelineUnavailableError" in \
        record.detail  # nothing answers the submit: recorded and retried from the outbox, not raised
    assert "offload" not in record.data
    assert record.data["window"]["collected_rows"] == 1200


class RecordingJobs:
    """MLClient.jobs as far as the runner uses it: records the submitted job, answers get/download."""

    def __init__(self, status="Running"):
        self.created, self.status, self.downloads = [], status, []
        self.profile: Profile | None = None

    def create_or_update(self, job):
        self.created.append(job)
        return SimpleNamespace(name="drift-job-7", studio_url="https://ml.azure.com/runs/drift-job-7")

    def get(self, name):
        return SimpleNamespace(name=name, status=self.status)

    def download(self, name, download_path, output_name):
        self.downloads.append((name, output_name))
        out = Path(download_path) / "named-outputs" / output_name
        out.mkdir(parents=True)
        self.profile.save(out / "current_profile.json")


def test_azure_ml_runner_submits_the_partitioned_pipeline_on_this_storage_account(env):
    jobs = RecordingJobs()
    runner = AzureMLDriftJobs(env.window, SimpleNamespace(jobs=jobs), "cpu-cluster", partitions=5)
    reference = build_profile(env.frame)
    plan = env.window.plan(time.time() - 3600, time.time(), [])
    job_id = runner.submit("timer-abc", reference, plan, HANDED_OVER)
    assert job_id == "drift-job-7"
    (job,) = jobs.created
    assert sorted(job.jobs) == ["merge"] + [f"profile_{i}" for i in range(5)]
    base = env.containers["reports"].url
    assert job.inputs["reference"]._data.path == f"{base}/drift-jobs/timer-abc/{REFERENCE_PROFILE}"
    assert job.inputs["manifest"]._data.path == f"{base}/drift-jobs/timer-abc/manifest.json"
    assert job.inputs["window"]._data.path == env.containers["inference"].url
    assert job.inputs["datasets"]._data.path == env.containers["datasets"].url
    assert job.inputs["critical"]._data == "euribor3m" and job.experiment_name == "bankmarketing-drift"
    assert job._validate().passed
    assert runner.result(job_id) == JobState("running", detail="Running")
    jobs.status = "Failed"
    assert runner.result(job_id).status == "failed" and "ended Failed" in runner.result(job_id).detail
    jobs.status, jobs.profile = "Completed", build_profile(env.frame.head(500), reference=reference)
    done = runner.result(job_id)
    assert done.status == "completed" and done.profile.rows == 500 and jobs.downloads == [(job_id, "result")]


def test_the_local_job_processes_get_only_the_storage_connection_and_no_other_secret(env, monkeypatch):
    """The job and its profile/merge steps are real processes; a sitecustomize on PYTHONPATH (an allowlisted name)
    writes each one's environment to a file, so the test sees exactly what they inherited."""
    dumps, hook = env.tmp / "envs", env.tmp / "hook"
    dumps.mkdir()
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import json, os, sys\n"
        f"with open(os.path.join({str(dumps)!r}, str(os.getpid()) + '.json'), 'w') as fh:\n"
        "    json.dump({'argv': sys.argv, 'env': dict(os.environ)}, fh)\n")
    secrets = {"SCORING_KEY": "scoring-key-7a1f", "WEBHOOK_SECRET": "webhook-secret-2b9c",
               "LOCAL_PIPELINE_TOKEN": "pipeline-token-5d3e",
               "EVENTGRID_WEBHOOK_URL": "http://127.0.0.1:1/runtime/webhooks/eventgrid?code=system-key-8e4a"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    live_at = env.stores.models.live().registered_at
    fill_window(env, live_at)
    runner = local_jobs(env, partitions=2)
    handed = check(env, HANDED_OVER, runner, now=live_at + 60)
    job = handed.data["offload"]["job"]
    wait_for(lambda: runner.result(job).status != "running", timeout=120, what="the local profiling job")
    assert runner.result(job).status == "completed"
    seen = [json.loads(p.read_text()) for p in dumps.glob("*.json")]
    assert len(seen) == 1 + 2 + 1  # the job, two profile steps, the merge
    for child in seen:
        assert not set(secrets) & set(child["env"]), child["argv"]
        assert not [v for v in secrets.values() if any(v in value for value in child["env"].values())]
    holders = [c for c in seen if "AzureWebJobsStorage" in c["env"]]
    assert len(holders) == 1 and holders[0]["env"]["AzureWebJobsStorage"] == env.azurite  # the job reads storage


def test_the_local_job_folders_and_log_are_private_even_when_they_existed(env):
    """drift-jobs/ (and a job's folder and log) are 0700/0600 even when an older version made them 0755/0644."""
    import stat

    jobs = env.tmp / "jobs"
    (jobs / "local-modes").mkdir(parents=True)
    jobs.chmod(0o755)
    (jobs / "local-modes").chmod(0o755)
    (jobs / "local-modes" / "job.log").write_text("an older run\n")
    (jobs / "local-modes" / "job.log").chmod(0o644)
    runner = local_jobs(env)
    live_at = env.stores.models.live().registered_at
    job = runner.submit("modes", build_profile(env.frame), env.window.plan(live_at, live_at + 60, []), INLINE)
    wait_for(lambda: runner.result(job).status != "running", timeout=120, what="the local profiling job")
    for path, expected in ((jobs, 0o700), (jobs / job, 0o700), (jobs / job / "job.log", 0o600)):
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
