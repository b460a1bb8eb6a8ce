"""Follow one upload through the loop, stage by stage, from what the services record in storage.

Nothing here drives the loop: it only watches the audit trail, the pipeline run and the scoring endpoint,
so what it shows is what really happened. While the run trains, the training step's own progress file
(`progress.json` in the run's outputs, shared/jobs/training/progress.py) is read from the local pipeline
endpoint's runs folder (`read_run_progress`, data) and shown by a `TrainingDisplay` (presentation).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from shared.domain.records import AuditRecord
from shared.jobs.training.progress import PROGRESS_FILE, TERMINAL, Phase

STAGES = [
    ("seen", "upload seen by the blob trigger"),
    ("validated", "validated"),
    ("registered", "dataset version registered"),
    ("accepted", "POST to the pipeline endpoint accepted"),
    ("training", "training"),
    ("run_completed", "run completed"),
    ("deployed", "model deployed"),
    ("answered", "sample scoring request answered"),
]


class LoopFailed(RuntimeError):
    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


@dataclass
class Progress:
    t0: float
    reached: dict[str, float] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    def mark(self, stage: str, at: float | None, report: Callable[[str, float], None]) -> None:
        if stage not in self.reached:
            self.reached[stage] = at if at is not None else time.time()
            report(stage, self.reached[stage] - self.t0)


@dataclass(frozen=True)
class RunProgress:
    """How far a run's training is, as its progress file says (shared/jobs/training/progress.py)."""

    phase: str
    elapsed_s: float  # since the job started; while it runs, up to the moment it was read
    budget_s: float
    trials: int  # FLAML trials so far (0 without a search: data in time order)
    best_score: float | None  # the best trial's CV score so far
    metric: str

    @property
    def ended(self) -> bool:
        return self.phase in TERMINAL


def progress_file(runs_dir: Path, run_id: str) -> Path | None:
    """`<runs_dir>/<run id>/outputs/progress.json` (where the local pipeline endpoint's worker has the job write
    its outputs), or None for a run id that is not a single folder name."""
    if not run_id or run_id in (".", "..") or Path(run_id).name != run_id or "\\" in run_id:
        return None
    return Path(runs_dir) / run_id / "outputs" / PROGRESS_FILE


def read_run_progress(runs_dir: Path, run_id: str, *, now: float | None = None) -> RunProgress | None:
    """The run's progress, or None when its file is missing, unreadable, cut short or not of the expected shape
    (the job replaces it whole, but a reader must not trust that). While the run is not done, the time since the
    file was last written is added to `elapsed_s`, so the figure moves during a long phase."""
    path = progress_file(runs_dir, run_id)
    if path is None:
        return None
    try:
        body = json.loads(path.read_text())
        best = body.get("best_score")
        progress = RunProgress(phase=str(body["phase"]), elapsed_s=float(body["elapsed_s"]),
                               budget_s=float(body["budget_s"]), trials=int(body["trials"]),
                               best_score=None if best is None else float(best),
                               metric=str(body.get("metric") or "score"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    updated = body.get("updated_at")
    if not progress.ended and isinstance(updated, int | float):
        since = max(0.0, (time.time() if now is None else now) - float(updated))
        progress = replace(progress, elapsed_s=progress.elapsed_s + since)
    return progress


def training_line(progress: RunProgress) -> str:
    """`training  42s / 120s budget · searching · 17 trials · best roc_auc 0.9431`."""
    parts = [f"{progress.elapsed_s:.0f}s / {progress.budget_s:g}s budget", progress.phase]
    if progress.trials or progress.phase == Phase.SEARCHING:
        parts.append(f"{progress.trials} trial" + ("" if progress.trials == 1 else "s"))
    if progress.best_score is not None:
        parts.append(f"best {progress.metric} {progress.best_score:.4f}")
    return "training  " + " · ".join(parts)


class TrainingView(Protocol):
    def show(self, progress: RunProgress) -> None: ...

    def end(self, progress: RunProgress | None) -> None: ...


class TrainingDisplay:
    """Shows a run's training progress. On a terminal (`live`): one line updated in place through `update` (a
    rich status's text), put back to `idle` when training ends. Elsewhere (a pipe, a CI log): a line printed
    through `emit` at most every `every_s` seconds. Either way the last figures are printed once at the end."""

    def __init__(self, *, live: bool, update: Callable[[str], None], emit: Callable[[str], None],
                 idle: str | None = None, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.live, self.update, self.emit, self.idle = live, update, emit, idle
        self.every_s, self.clock = every_s, clock
        self._shown: str | None = None
        self._printed_at: float | None = None

    def show(self, progress: RunProgress) -> None:
        line = training_line(progress)
        if self.live:
            if line != self._shown:
                self.update(line)
        elif self._printed_at is None or self.clock() - self._printed_at >= self.every_s:
            self.emit(line)
            self._printed_at = self.clock()
        self._shown = line

    def end(self, progress: RunProgress | None) -> None:
        if progress is not None:
            self.emit(training_line(progress))
        if self.live and self.idle is not None:
            self.update(self.idle)


def _find_upload_record(audit, source: str, t0: float) -> AuditRecord | None:
    candidates = [r for r in audit.list() if r.source == source and r.started_at >= t0 - 1]
    return candidates[-1] if candidates else None


def _find_completion(audit, run_id: str) -> AuditRecord | None:
    for record in reversed(audit.list()):
        if record.trigger == "eventgrid" and record.run_id == run_id and record.outcome != "duplicate":
            return record
    return None


def follow_upload(*, source: str, t0: float, audit, pipeline, scorer, sample: list[dict],
                  report: Callable[[str, float], None], timeout_s: float = 1800, poll_s: float = 0.5,
                  record_id: str | None = None, runs_dir: Path | None = None,
                  training: TrainingView | None = None) -> dict:
    """Block until the upload is served by a new model (returns a summary) or fails (raises LoopFailed).
    `record_id`: follow that trigger's audit record instead of the upload of `source` (a webhook request).
    `runs_dir` and `training`: while the run trains, its progress file (read from the local pipeline endpoint's
    runs folder) is handed to `training.show`, and once more to `training.end` when the run has ended."""
    progress = Progress(t0=t0)
    trained: RunProgress | None = None  # the last progress read (kept when a read finds nothing)
    training_ended = False
    summary = progress.summary
    summary["status"] = "in_progress"
    deadline = time.time() + timeout_s
    upload = completion = None
    while time.time() < deadline:
        if upload is None or upload.outcome in ("in_progress", "queued"):  # queued: coalescing, or a run in flight
            upload = (audit.get(record_id) if record_id else _find_upload_record(audit, source, t0)) or upload
        if upload is not None:
            for stage in ("seen", "validated", "registered", "accepted"):
                if stage in upload.stages:
                    progress.mark(stage, upload.stages[stage], report)
            summary.update(dataset_version=upload.dataset_version, run_id=upload.run_id, audit_id=upload.id)
            if "accepted" in upload.stages:
                summary["upload_to_post_s"] = round(upload.stages["accepted"] - t0, 3)
            if upload.outcome in ("rejected", "failed", "duplicate", "superseded"):
                summary["status"] = upload.outcome
                raise LoopFailed(upload.detail, summary)
        run_id = upload.run_id if upload else None
        if run_id and "run_completed" not in progress.reached:
            run = pipeline.get_run(run_id)
            if run.status == "Running":
                progress.mark("training", None, report)
                if training is not None and runs_dir is not None:
                    trained = read_run_progress(runs_dir, run_id) or trained
                    if trained is not None:
                        training.show(trained)
            if run.finished:
                progress.mark("training", None, report)
                if training is not None and not training_ended:
                    training_ended = True
                    training.end((read_run_progress(runs_dir, run_id) if runs_dir is not None else None) or trained)
                summary["training_s"] = round(time.time() - progress.reached["training"], 3)
                if run.status != "Completed":
                    summary["status"] = "failed"
                    detail = (run.raw.get("Status") or {}).get("StatusDetail") or run.status
                    raise LoopFailed(f"pipeline run {run_id} {run.status.lower()}: {detail}", summary)
        if run_id:
            completion = _find_completion(audit, run_id) or completion
        if completion is not None:
            for stage in ("run_completed", "deployed"):
                if stage in completion.stages:
                    progress.mark(stage, completion.stages[stage], report)
            summary["model_version"] = completion.model_version
            summary["metrics"] = completion.data.get("metrics", {})
            if completion.outcome == "failed":
                summary["status"] = "failed"
                raise LoopFailed(completion.detail, summary)
            if completion.outcome == "deployed":
                answer = scorer.score(sample)
                if str(answer.get("model_version")) == str(completion.model_version):
                    progress.mark("answered", time.time(), report)
                    summary["upload_to_serving_s"] = round(progress.reached["answered"] - t0, 3)
                    summary["prediction"] = answer.get("result")
                    summary["status"] = "deployed"
                    return summary
        time.sleep(poll_s)
    summary["status"] = "timeout"
    raise LoopFailed(f"no served model within {timeout_s:.0f}s", summary)
