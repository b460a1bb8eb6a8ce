"""The training job's progress file for real: the job trains a small generated dataset with a tiny budget, and
every version of `progress.json` it writes is read back from disk as it is replaced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from local.follow import read_run_progress, training_line
from shared.domain.sample_data import generate_sample
from shared.jobs.training import job
from shared.jobs.training import progress as progress_module
from shared.jobs.training.progress import PROGRESS_FILE, TrainingProgress


def _run_job(tmp_path: Path, monkeypatch, frame, *extra: str) -> tuple[int, Path, list[dict]]:
    """job.main on `frame`; returns its exit code, output folder and the progress file's successive contents, each
    read from disk right after the job replaced it."""
    data, out = tmp_path / "data.csv", tmp_path / "out"
    frame.to_csv(data, index=False)
    seen: list[dict] = []

    def recording(folder, **kwargs):
        path = Path(folder) / PROGRESS_FILE
        return TrainingProgress(path, on_write=lambda _: seen.append(json.loads(path.read_text())), **kwargs)

    monkeypatch.setattr(progress_module, "file_progress", recording)
    code = job.main(["--data", str(data), "--out", str(out), *extra])
    return code, out, seen


def _phases(seen: list[dict]) -> list[str]:
    """The phases in the order they came, each run of one phase once."""
    return [s["phase"] for i, s in enumerate(seen) if i == 0 or seen[i - 1]["phase"] != s["phase"]]


def test_a_searched_run_reports_each_trial_and_phase_and_ends_with_the_jobs_figures(tmp_path, monkeypatch):
    # max_iter ends the search after at most 3 trials (fewer when the machine is so loaded that the budget ends it)
    code, out, seen = _run_job(tmp_path, monkeypatch, generate_sample(1500, seed=3),
                               "--budget-s", "60", "--max-iter", "3", "--seed", "5")
    status = json.loads((out / "status.json").read_text())
    assert code == 0, status
    metrics = status["metrics"]
    final = json.loads((out / PROGRESS_FILE).read_text())

    assert len(seen) > 5  # every write changed the phase or the search's figures:
    assert all((a["phase"], a["trials"], a["best_score"]) != (b["phase"], b["trials"], b["best_score"])
               for a, b in zip(seen, seen[1:], strict=False))
    assert seen[-1] == final
    assert _phases(seen) == ["preparing", "searching", "fitting", "evaluating", "fitting", "saving", "evaluating",
                             "saving", "done"]
    # the trials as they ended (FLAML's trial log), while the search was still running
    searching = [s for s in seen if s["phase"] == "searching"]
    assert searching[0]["trials"] == 0 and searching[0]["best_score"] is None
    counts = [s["trials"] for s in searching]
    assert counts == sorted(counts) and 1 <= counts[-1] == metrics["search_trials"] <= 3
    scores = [s["best_score"] for s in searching if s["best_score"] is not None]
    assert scores and scores == sorted(scores) and scores[-1] == metrics["search_auc"]
    # and the end: the job's own figures
    assert final["phase"] == "done" and final["trials"] == metrics["search_trials"] >= 1
    assert final["best_score"] == metrics["search_auc"] and final["metric"] == "roc_auc"
    assert final["budget_s"] == 60.0
    elapsed = [s["elapsed_s"] for s in seen]
    assert elapsed == sorted(elapsed) and final["elapsed_s"] > 0 and final["updated_at"] >= final["started_at"]
    assert not list(out.glob(".*.tmp"))  # replaced whole, nothing left beside it

    # what `retrain run` reads from the local runs folder layout (<runs>/<run id>/outputs/progress.json)
    runs = tmp_path / "runs"
    (runs / "run-7").mkdir(parents=True)
    (out).rename(runs / "run-7" / "outputs")
    shown = read_run_progress(runs, "run-7")
    assert shown is not None and shown.phase == "done" and shown.trials == final["trials"]
    trials = f"{final['trials']} trial" + ("s" if final["trials"] > 1 else "")
    assert training_line(shown) == (f"training  {final['elapsed_s']:.0f}s / 60s budget · done · {trials} · "
                                    f"best roc_auc {final['best_score']:.4f}")


def test_a_time_ordered_run_reports_its_phases_without_a_search(tmp_path, monkeypatch):
    frame = generate_sample(1500, seed=4)
    stretch = np.arange(len(frame)) * 6 // len(frame)  # six stretches of rows, as in tests/integration/test_training
    frame["cons.price.idx"] = 92.0 + stretch * 0.311
    frame["nr.employed"] = 5200.0 - stretch * 17.5
    code, out, seen = _run_job(tmp_path, monkeypatch, frame, "--budget-s", "2")
    status = json.loads((out / "status.json").read_text())
    assert code == 0, status
    assert status["metrics"]["time_order"] is not None and status["metrics"]["search_trials"] == 0
    # judged on the newest rows, then the whole training again on every row: one `refit` phase
    assert _phases(seen) == ["preparing", "fitting", "evaluating", "fitting", "evaluating", "refit", "saving", "done"]
    assert all(s["trials"] == 0 and s["best_score"] is None for s in seen)
    final = json.loads((out / PROGRESS_FILE).read_text())
    assert final["phase"] == "done" and final["budget_s"] == 2.0


def test_a_failed_run_ends_in_phase_failed(tmp_path, monkeypatch):
    frame = generate_sample(300, seed=1).drop(columns=["y"])
    code, out, seen = _run_job(tmp_path, monkeypatch, frame, "--budget-s", "2")
    assert code == 1
    assert [s["phase"] for s in seen] == ["preparing", "failed"]
    assert json.loads((out / PROGRESS_FILE).read_text())["phase"] == "failed"


def test_the_job_writes_the_file_without_any_hook(tmp_path):
    """With max_iter 1 FLAML fits the starting configuration without scoring it: 1 trial, no score."""
    data, out = tmp_path / "data.csv", tmp_path / "out"
    generate_sample(600, seed=2).to_csv(data, index=False)
    assert job.main(["--data", str(data), "--out", str(out), "--budget-s", "2", "--max-iter", "1",
                     "--evaluation-percent", "0"]) == 0
    final = json.loads((out / PROGRESS_FILE).read_text())
    metrics = json.loads((out / "status.json").read_text())["metrics"]
    assert final["phase"] == "done" and final["trials"] == metrics["search_trials"] == 1
    assert final["best_score"] is None and metrics["search_auc"] is None
