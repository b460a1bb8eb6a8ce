"""Training progress without training: the progress file's writer, the FLAML trial-log follower, the reader that
`retrain run` uses (missing and cut-short files), the line it shows, and the follower's training display."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from local.follow import RunProgress, TrainingDisplay, follow_upload, read_run_progress, training_line
from shared.domain.records import AuditRecord
from shared.jobs.training.progress import PROGRESS_FILE, Phase, TrainingProgress
from shared.jobs.training.search import TrialLog


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _write(path: Path, **values) -> Path:
    body = {"phase": "searching", "elapsed_s": 12.0, "budget_s": 120.0, "trials": 3, "best_score": 0.91,
            "metric": "roc_auc", "started_at": 100.0, "updated_at": 112.0, **values}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path


# --- the writer ---------------------------------------------------------------------------------------------------

def test_the_file_is_replaced_whole_on_each_change_and_only_then(tmp_path):
    clock, seen = Clock(), []
    path = tmp_path / PROGRESS_FILE
    progress = TrainingProgress(path, budget_s=30, clock=clock, on_write=seen.append)
    clock.now += 2.5
    progress.search_started()  # nothing changed: trials 0, no score
    progress.phase(Phase.SEARCHING)
    clock.now += 1
    progress.trial(1, 0.8765432)
    progress.trial(1, 0.8765432)  # the same figures again: not written again
    progress.trial(2, float("nan"))  # NaN or infinite: no score
    assert [s["phase"] for s in seen] == ["preparing", "searching", "searching", "searching"]
    assert [(s["trials"], s["best_score"]) for s in seen] == [(0, None), (0, None), (1, 0.876543), (2, None)]
    assert json.loads(path.read_text()) == seen[-1] == {
        "phase": "searching", "elapsed_s": 3.5, "budget_s": 30.0, "trials": 2, "best_score": None,
        "metric": "roc_auc", "started_at": 1000.0, "updated_at": 1003.5}
    assert [p.name for p in tmp_path.iterdir()] == [PROGRESS_FILE]  # the temporary file was renamed


def test_a_second_training_pass_is_reported_as_refit_until_it_ends(tmp_path):
    seen = []
    progress = TrainingProgress(None, budget_s=5, on_write=seen.append)  # no file: train() without a job
    with progress.holding(Phase.REFIT):
        progress.phase(Phase.SEARCHING)
        progress.trial(4, 0.9)
        progress.phase(Phase.EVALUATING)
    progress.phase(Phase.SAVING)
    progress.phase(Phase.DONE)
    assert [(s["phase"], s["trials"]) for s in seen] == [("preparing", 0), ("refit", 0), ("refit", 4),
                                                         ("saving", 4), ("done", 4)]


def test_a_progress_file_that_cannot_be_written_does_not_stop_training(tmp_path):
    progress = TrainingProgress(tmp_path / "absent" / PROGRESS_FILE, budget_s=5)
    progress.phase(Phase.DONE)
    assert progress.state["phase"] == "done" and not (tmp_path / "absent").exists()


# --- FLAML's trial log, followed -------------------------------------------------------------------------------------

def _record(trial: int, loss: float) -> str:  # TrainingLogRecord's JSON, as flaml/automl/training_log.py dumps it
    return json.dumps({"record_id": trial - 1, "iter_per_learner": trial, "logged_metric": {"pred_time": 1e-5},
                       "trial_time": 0.3, "wall_clock_time": trial * 0.4, "validation_loss": loss,
                       "config": {"n_estimators": 4}, "learner": "lgbm", "sample_size": 900})


def test_the_trial_log_is_read_line_by_line_as_it_grows(tmp_path):
    calls = []
    log = TrialLog(tmp_path / "trials.jsonl", lambda trials, best: calls.append((trials, round(best, 6))))
    log.read()  # not created yet
    with open(log.path, "w") as fh:
        fh.write(_record(1, 0.12) + "\n" + _record(2, 0.15)[:40])  # the second line is still being written
        fh.flush()
        log.read()
        fh.write(_record(2, 0.15)[40:] + "\n")
        fh.flush()
        log.read()
        fh.write(_record(3, 0.10) + "\n" + json.dumps({"curr_best_record_id": 2}) + "\n")  # FLAML's checkpoint
    log.read()
    log.read()  # nothing new: no call
    assert calls == [(1, 0.88), (2, 0.88), (3, 0.9)]


def test_closing_the_log_reads_what_its_thread_has_not(tmp_path):
    calls = []
    log = TrialLog(tmp_path / "trials.jsonl", lambda trials, best: calls.append((trials, round(best, 6))),
                   poll_s=3600).start()  # its thread will not poll before close
    log.path.write_text(_record(1, 0.2) + "\n" + _record(2, 0.25) + "\n")
    log.close()
    assert calls == [(2, 0.8)]


# --- what `retrain run` reads ----------------------------------------------------------------------------------------

def test_the_reader_takes_the_run_folders_progress_file_and_counts_the_time_since_it_was_written(tmp_path):
    _write(tmp_path / "run-1" / "outputs" / PROGRESS_FILE)
    assert read_run_progress(tmp_path, "run-1", now=115.5) == RunProgress(
        phase="searching", elapsed_s=15.5, budget_s=120.0, trials=3, best_score=0.91, metric="roc_auc")
    assert read_run_progress(tmp_path, "run-1", now=100.0).elapsed_s == 12.0  # a clock behind the writer's
    _write(tmp_path / "run-2" / "outputs" / PROGRESS_FILE, phase="done", best_score=None)
    ended = read_run_progress(tmp_path, "run-2", now=500.0)
    assert ended.ended and ended.elapsed_s == 12.0 and ended.best_score is None  # done: the time stops


@pytest.mark.parametrize("content", ["", '{"phase": "searching", "elapsed_s": 12.0, "bud', "[]", "null",
                                     '{"phase": "searching"}', '{"phase": "searching", "elapsed_s": "soon", '
                                     '"budget_s": 1, "trials": 0}', "\x00\x01"])
def test_the_reader_tolerates_a_cut_short_or_foreign_file(tmp_path, content):
    path = tmp_path / "run-1" / "outputs" / PROGRESS_FILE
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert read_run_progress(tmp_path, "run-1") is None


@pytest.mark.parametrize("run_id", ["absent", "", "..", ".", "../run-1", "run-1/outputs", "a\\b"])
def test_the_reader_finds_nothing_for_a_missing_run_or_a_run_id_that_is_not_one_folder(tmp_path, run_id):
    _write(tmp_path / "run-1" / "outputs" / PROGRESS_FILE)
    _write(tmp_path / "outputs" / PROGRESS_FILE)
    assert read_run_progress(tmp_path / "run-1", run_id) is None


# --- the line and its display ----------------------------------------------------------------------------------------

def _progress(**values) -> RunProgress:
    return RunProgress(**{"phase": "searching", "elapsed_s": 42.4, "budget_s": 120.0, "trials": 17,
                          "best_score": 0.94312, "metric": "roc_auc", **values})


@pytest.mark.parametrize("values, line", [
    ({}, "training  42s / 120s budget · searching · 17 trials · best roc_auc 0.9431"),
    ({"trials": 1}, "training  42s / 120s budget · searching · 1 trial · best roc_auc 0.9431"),
    ({"trials": 0, "best_score": None}, "training  42s / 120s budget · searching · 0 trials"),
    ({"phase": "preparing", "elapsed_s": 0.3, "trials": 0, "best_score": None},
     "training  0s / 120s budget · preparing"),
    ({"phase": "fitting", "trials": 0, "best_score": None, "budget_s": 2.5},  # time order: no search
     "training  42s / 2.5s budget · fitting"),
    ({"phase": "done", "elapsed_s": 131.6}, "training  132s / 120s budget · done · 17 trials · best roc_auc 0.9431"),
])
def test_the_training_line(values, line):
    assert training_line(_progress(**values)) == line


@dataclass
class Screen:
    lines: list[str] = field(default_factory=list)  # the in-place line's successive texts
    printed: list[str] = field(default_factory=list)


def test_on_a_terminal_one_line_is_updated_in_place_then_given_back(tmp_path):
    screen = Screen()
    display = TrainingDisplay(live=True, update=screen.lines.append, emit=screen.printed.append, idle="waiting…")
    display.show(_progress(trials=1))
    display.show(_progress(trials=1))  # the same line: not redrawn
    display.show(_progress(trials=2))
    display.end(_progress(phase="done", trials=2))
    assert screen.lines == [training_line(_progress(trials=1)), training_line(_progress(trials=2)), "waiting…"]
    assert screen.printed == [training_line(_progress(phase="done", trials=2))]


def test_elsewhere_a_line_is_printed_at_most_every_ten_seconds(tmp_path):
    screen, clock = Screen(), Clock(0.0)
    display = TrainingDisplay(live=False, update=screen.lines.append, emit=screen.printed.append, clock=clock)
    for second, trials in ((0, 1), (4, 2), (9.9, 3), (10, 4), (15, 5), (20.5, 6)):
        clock.now = second
        display.show(_progress(trials=trials))
    display.end(None)  # the run ended without a progress file: nothing to add
    assert screen.lines == []
    assert [line.split(" · ")[2] for line in screen.printed] == ["1 trial", "4 trials", "6 trials"]


# --- the follower hands the run's progress to the display while it trains ---------------------------------------

class FakeRun:
    def __init__(self, status: str):
        self.status, self.raw, self.outputs = status, {}, {}

    @property
    def finished(self) -> bool:
        return self.status in ("Completed", "Failed", "Canceled")


def test_follow_upload_shows_the_runs_progress_while_it_trains(tmp_path):
    runs = tmp_path / "runs"
    path = runs / "run-9" / "outputs" / PROGRESS_FILE
    upload = AuditRecord(id="blob-1", trigger="blob", function="blob_upload", started_at=0.0, outcome="submitted",
                         source="incoming/a.csv", dataset_version=1, run_id="run-9",
                         stages={s: 1.0 for s in ("seen", "validated", "registered", "accepted")})
    completion = AuditRecord(id="evt-1", trigger="eventgrid", function="run_completed", started_at=5.0,
                             outcome="deployed", run_id="run-9", model_version=1,
                             stages={"run_completed": 5.0, "deployed": 6.0})
    records = [upload]
    # what the pipeline endpoint answers on each poll, and what the job has written by then
    script = [("Queued", None), ("Running", None), ("Running", {"phase": "searching", "trials": 2}),
              ("Running", {"phase": "evaluating", "trials": 5}), ("Completed", {"phase": "done", "trials": 5})]

    class Pipeline:
        def get_run(self, run_id):
            status, written = script.pop(0) if script else ("Completed", None)
            if written:
                _write(path, **written)
            if status == "Completed":
                records[:] = [upload, completion]
            return FakeRun(status)

    class Audit:
        def list(self):
            return list(records)

        def get(self, record_id):
            return next((r for r in records if r.id == record_id), None)

    class Scorer:
        def score(self, sample):
            return {"model_version": 1, "result": ["no"]}

    class View:
        def __init__(self):
            self.shown, self.ended = [], []

        def show(self, progress):
            self.shown.append((progress.phase, progress.trials))

        def end(self, progress):
            self.ended.append((progress.phase, progress.trials))

    view = View()
    summary = follow_upload(source="incoming/a.csv", t0=0.5, audit=Audit(), pipeline=Pipeline(), scorer=Scorer(),
                            sample=[{}], report=lambda stage, elapsed: None, poll_s=0, runs_dir=runs,
                            training=view)
    assert summary["status"] == "deployed"
    assert view.shown == [("searching", 2), ("evaluating", 5)]  # nothing before the job wrote its file
    assert view.ended == [("done", 5)]  # once, though the run stays finished on later polls
