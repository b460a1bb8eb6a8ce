"""The drift check (timer, or on demand over HTTP): what the live model is being asked about now against the
reference profile stored with it at training time.

The current window is the scoring inputs the endpoint collected during the last `window_s` (and since the
live model went live) plus the dataset versions registered after the model's training data. Every check writes
an HTML report to the reports container and ends in an audit record; a drift submits a retrain (reason
`drift`) unless one is in flight, one was submitted within the cooldown, or the newest model already trained on
the newest data — each skip says why.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from shared import telemetry
from shared.domain import schema
from shared.domain.drift import compare_profiles
from shared.domain.drift_report import render_html
from shared.domain.label_rule import as_compared
from shared.domain.outcomes import JobStatus, Outcome
from shared.domain.profile import REFERENCE_PROFILE, Profile, build_profile
from shared.domain.records import AuditRecord, DatasetVersion, ModelVersion, new_id
from shared.ports import DatasetLog, DriftJobs, InferenceReader, ReportWriter, RunLog, WindowPlanView
from shared.services.dispatch import RetrainDispatch, request_and_dispatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftPolicy:
    threshold: float = 0.1
    share: float = 0.5
    min_rows: int = 100
    window_s: float = 7 * 86400.0
    cooldown_s: float = 6 * 3600.0
    critical: tuple[str, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)
    inline_max_bytes: int = 256 * 1024 * 1024  # a larger window goes to the parallel profiling job
    job_timeout_s: float = 3 * 3600.0  # a profiling job not done after this fails the check


@dataclass(frozen=True)
class DriftCheck:
    """What a drift check needs: its policy, the way to ask for a retrain (whose stores give the live model, the
    datasets and the runs), the collected scoring inputs (None: none collected), where reports go (None: not
    stored), and the large-window job runner (None: every window is profiled here)."""

    policy: DriftPolicy
    retrain: RetrainDispatch
    inference: InferenceReader | None = None
    reports: ReportWriter | None = None
    offload: DriftJobs | None = None


def check_drift(drift: DriftCheck, *, past_due: bool, trigger: str = "timer", function: str = "drift_timer",
                record_id: str | None = None, now: float | None = None) -> AuditRecord:
    """`record_id`: the audit id to use (the caller announced it, e.g. as the single-flight claim's Location)."""
    now = time.time() if now is None else now
    with telemetry.span("drift_check", kind="consumer" if trigger == "timer" else "server", past_due=past_due) as span:
        waiting = resume_drift_checks(drift, now=now) if drift.offload is not None else []
        record = _check(drift, past_due=past_due, trigger=trigger, function=function, now=now, waiting=waiting,
                        record_id=record_id)
        span.set(outcome=record.outcome, trigger_id=record.id, dataset_version=record.dataset_version)
    return record


def _check(drift: DriftCheck, *, past_due: bool, trigger: str, function: str, now: float,
           waiting: list[AuditRecord], record_id: str | None) -> AuditRecord:
    policy, audit, datasets = drift.policy, drift.retrain.audit, drift.retrain.datasets
    record = AuditRecord(id=record_id or new_id(f"{trigger}-"), trigger=trigger, function=function,
                         started_at=time.time(),
                         source="schedule" + (" (past due)" if past_due else "") if trigger == "timer" else "on demand")
    audit.save(record)
    if waiting:
        job = waiting[0].data.get("offload", {}).get("job")
        return audit.finish(record, Outcome.SKIPPED, f"a drift profiling job is still running (job {job}, check "
                                               f"{waiting[0].id}); its verdict comes first")
    live = drift.retrain.models.live()
    if live is None:
        return audit.finish(record, Outcome.SKIPPED, "skipped: no live model yet")
    record.model_version = live.version
    latest = datasets.latest()
    record.dataset_version = latest.version if latest else None

    reference, basis = _reference(live, datasets)
    since = _since(live, policy, now)
    newer = _newer_datasets(live, latest, datasets)
    if drift.offload is not None:
        plan = drift.offload.storage.plan(since, now, [d.path for d in newer])
        if plan.total_bytes > policy.inline_max_bytes:
            return _hand_over(record, drift, reference, plan, basis, now)
    current, sources = _current(drift.inference, newer, datasets, since, now)
    record.data["window"] = {**sources, "reference": basis}
    if current is None or len(current) == 0:
        return audit.finish(record, Outcome.SKIPPED, "not enough data: nothing collected or uploaded since the live "
                            f"model v{live.version} was trained")
    labelled = schema.TARGET in current.columns and current[schema.TARGET].notna().all()
    current_profile = build_profile(current if labelled else current.drop(columns=[schema.TARGET], errors="ignore"),
                                    reference=reference)
    return _conclude(record, live, latest, reference, current_profile, labelled, drift, now)


def _hand_over(record: AuditRecord, drift: DriftCheck, reference: Profile, plan: WindowPlanView, basis: str,
               now: float) -> AuditRecord:
    policy, audit, offload = drift.policy, drift.retrain.audit, drift.offload
    megabytes = plan.total_bytes / 1e6
    record.data["window"] = {"since": plan.since, "files": len(plan.files), "bytes": plan.total_bytes,
                             "reference": basis}
    try:
        job = offload.submit(record.id, reference, plan, policy)
    except Exception as exc:
        return audit.finish(record, Outcome.FAILED, f"window of {megabytes:.0f} MB is over the inline limit "
                                              f"({policy.inline_max_bytes / 1e6:.0f} MB) and submitting the "
                                              f"profiling job failed: {type(exc).__name__}: {exc}")
    record.data["offload"] = {"job": job, "runner": getattr(offload, "name", ""), "submitted_at": now}
    record.stage(Outcome.PROFILING.value)
    record.outcome = Outcome.PROFILING
    record.detail = (f"window of {len(plan.files)} file(s), {megabytes:.0f} MB, over the inline limit "
                     f"({policy.inline_max_bytes / 1e6:.0f} MB): profiling in parallel as job {job}; the verdict "
                     "follows when it completes")
    audit.save(record)
    return record


def resume_drift_checks(drift: DriftCheck, now: float | None = None) -> list[AuditRecord]:
    """Finish the checks whose profiling job ended; returns those still waiting for theirs."""
    now = time.time() if now is None else now
    policy, audit, offload = drift.policy, drift.retrain.audit, drift.offload
    waiting = []
    for pending in audit.with_outcome(Outcome.PROFILING):
        job = pending.data.get("offload", {}).get("job", "")
        try:
            state = offload.result(job)
        except Exception as exc:  # the job service is unreachable: ask again next time
            log.warning("drift job %s: state unknown (%s)", job, type(exc).__name__)
            state = None
        overdue = now - float(pending.data.get("offload", {}).get("submitted_at", now)) > policy.job_timeout_s
        if (state is None or state.status == JobStatus.RUNNING) and not overdue:
            waiting.append(pending)
            continue
        record = audit.claim(pending.id, Outcome.PROFILING, Outcome.CONCLUDING)
        if record is None:
            continue  # another instance took it
        with telemetry.span("drift_check_resume", trigger_id=record.id, job=job):
            if state is not None and state.status == JobStatus.COMPLETED:
                _conclude_handed_over(record, state.profile, drift, now)
            elif state is not None and state.status == JobStatus.FAILED:
                audit.finish(record, Outcome.FAILED, f"profiling job {job} failed: {state.detail}")
            else:
                audit.finish(record, Outcome.FAILED, f"profiling job {job} did not finish within "
                                               f"{int(policy.job_timeout_s)} s")
    return waiting


def _conclude_handed_over(record: AuditRecord, current_profile: Profile, drift: DriftCheck,
                          now: float) -> AuditRecord:
    record.stage("profiled")
    live = drift.retrain.models.live()
    if live is None or live.version != record.model_version:
        return drift.retrain.audit.finish(record, Outcome.SKIPPED, f"the live model changed (v{record.model_version} "
                                          f"-> v{live.version if live else '-'}) while the window was profiled; the "
                                          "next check compares against the new one")
    reference = drift.offload.storage.staged_reference(record.id)
    current_profile, labelled = as_compared(current_profile)
    record.data["window"]["rows"] = current_profile.rows
    return _conclude(record, live, drift.retrain.datasets.latest(), reference, current_profile, labelled, drift, now)


def _conclude(record: AuditRecord, live: ModelVersion, latest: DatasetVersion | None, reference: Profile,
              current_profile: Profile, labelled: bool, drift: DriftCheck, now: float) -> AuditRecord:
    policy, audit = drift.policy, drift.retrain.audit
    result = compare_profiles(reference, current_profile, threshold=policy.threshold, share=policy.share,
                              min_rows=policy.min_rows, thresholds=policy.thresholds, critical=policy.critical,
                              target_counts=labelled)
    record.stage("checked")
    record.data["drift"] = {"drifted": result.drifted, "drift_share": result.drift_share, "verdict": result.verdict,
                            "rows": result.rows, "drifted_columns": result.drifted_columns,
                            "scores": {c: v["score"] for c, v in result.columns.items()}, "target": result.target}
    if drift.reports is not None:
        try:
            record.data["report"] = drift.reports(f"{time.strftime('%Y/%m/%d', time.gmtime(now))}/{record.id}.html",
                                                  render_html(result, reference, current_profile))
        except Exception as exc:  # the verdict stands without its report; say so
            log.warning("drift report not stored: %s", exc)
            record.data["report_error"] = f"{type(exc).__name__}: {exc}"
    if result.drifted is None:
        return audit.finish(record, Outcome.SKIPPED, f"not enough data: {result.verdict}")
    if not result.drifted:
        return audit.finish(record, Outcome.NO_DRIFT, f"no drift: {result.verdict}")
    why = _reason_not_to_retrain(live, latest, drift.retrain.runs, policy, now)
    if why:
        return audit.finish(record, Outcome.SKIPPED, f"drift ({result.verdict}) but {why}")
    report = {"drift_report": record.data["report"]} if record.data.get("report") else None
    # through the outbox, like every trigger: it retries and keeps single flight; the record says what became of it
    _, record = request_and_dispatch(record, latest, drift.retrain, reason="drift", parameters=report,
                                     detail=f"drift: {result.verdict}; dataset v{latest.version}")
    return record


def _reference(live: ModelVersion, datasets: DatasetLog) -> tuple[Profile, str]:
    """The profile stored with the live model; for models without one (or whose folder is not readable from
    here), a profile of the dataset version it was trained on."""
    path = Path(str(live.model_dir or "")) / REFERENCE_PROFILE
    try:
        if path.is_file():
            return Profile.load(path), f"model v{live.version} profile"
    except (OSError, ValueError) as exc:
        log.warning("reference profile of v%s unreadable (%s); profiling its dataset instead", live.version, exc)
    dataset = datasets.get(live.dataset_version)
    return build_profile(pd.read_csv(io.BytesIO(datasets.read(dataset)))), f"dataset v{live.dataset_version}"


def _since(live: ModelVersion, policy: DriftPolicy, now: float) -> float:
    return max(now - policy.window_s, live.registered_at or 0.0)


def _newer_datasets(live: ModelVersion, latest: DatasetVersion | None,
                    datasets: DatasetLog) -> list[DatasetVersion]:
    found = (datasets.get(v) for v in range(live.dataset_version + 1, (latest.version if latest else 0) + 1))
    return [d for d in found if d is not None]


def _current(inference: InferenceReader | None, newer: list[DatasetVersion], datasets: DatasetLog, since: float,
             now: float) -> tuple[pd.DataFrame | None, dict]:
    frames, sources = [], {"since": since, "collected_rows": 0, "datasets": []}
    if inference is not None:
        collected = inference(since, now)
        if len(collected):
            frames.append(collected)
            sources["collected_rows"] = len(collected)
    for dataset in newer:
        frames.append(pd.read_csv(io.BytesIO(datasets.read(dataset))))
        sources["datasets"].append(dataset.version)
    if not frames:
        return None, sources
    return pd.concat(frames, ignore_index=True), sources


def _reason_not_to_retrain(live: ModelVersion, latest: DatasetVersion | None, runs: RunLog, policy: DriftPolicy,
                           now: float) -> str:
    if latest is None:
        return "there is no dataset version to retrain on"
    if latest.version == live.dataset_version:
        return (f"the live model v{live.version} was already trained on the newest data (v{latest.version}); "
                "upload newer labelled data to retrain on")
    if runs.in_flight():
        return "a retrain is already in flight"
    recent = [r for r in runs.list() if now - r.submitted_at < policy.cooldown_s]
    if recent:
        return (f"a retrain was submitted {int(now - recent[-1].submitted_at)} s ago (cooldown "
                f"{int(policy.cooldown_s)} s)")
    return ""
