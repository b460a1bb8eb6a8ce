"""How far a training run is, as a small JSON file in the job's output folder (`progress.json`).

The job rewrites the file whole (a temporary file, then `os.replace`) at every phase change and after every FLAML
trial that changed the figures, so a reader sees the previous version or the next, never half of one:

    {"phase": "searching", "elapsed_s": 41.7, "budget_s": 120.0, "trials": 17, "best_score": 0.9431,
     "metric": "roc_auc", "started_at": 1765000000.0, "updated_at": 1765000041.7}

`trials` and `best_score` are the search's: FLAML trials so far and the best 3-fold CV AUC among them (null
before the first trial ends). They end equal to `search_trials` and `search_auc` of the run's metrics (0 and null
on data in time order, which is trained with a fixed configuration, no search). `elapsed_s` counts from the job's
start; `budget_s` is the training budget (`--budget-s`). `updated_at` is the writer's clock (epoch seconds), so a
reader can add the time since the last write while the run is not done.

Locally the file is `<runs folder>/<run id>/outputs/progress.json`, which `retrain run` reads; in Azure ML it is
a file of the job's output folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

PROGRESS_FILE = "progress.json"
SEARCH_METRIC = "roc_auc"  # what FLAML's search scores each trial by (3-fold CV; Azure's AUC_weighted for 2 classes)


class Phase(StrEnum):
    PREPARING = "preparing"  # reading the file, holding rows out, encoding
    SEARCHING = "searching"  # FLAML trials
    FITTING = "fitting"  # the chosen configuration fitted on the rows, and the bag's other members
    EVALUATING = "evaluating"  # out-of-fold evaluation; the held-out rows scored by both models
    REFIT = "refit"  # judged on the newest rows, trained again on every row (the whole second training)
    SAVING = "saving"  # the MLflow model, the reference profile, the content digest, tracking
    DONE = "done"
    FAILED = "failed"


TERMINAL = frozenset({Phase.DONE, Phase.FAILED})


class TrainingProgress:
    """The run's progress; writes `path` on every change (nothing when `path` is None: `train()` called without
    a file, as the quality bench does). Thread-safe: FLAML's trials are reported from a thread."""

    def __init__(self, path: Path | None, *, budget_s: float, metric: str = SEARCH_METRIC,
                 clock: Callable[[], float] = time.time, on_write: Callable[[dict[str, Any]], None] | None = None):
        self.path = Path(path) if path is not None else None
        self._clock = clock
        self._on_write = on_write
        self._lock = threading.Lock()
        self._started = clock()
        self._held: Phase | None = None
        self.state: dict[str, Any] = {"phase": Phase.PREPARING.value, "elapsed_s": 0.0, "budget_s": float(budget_s),
                                      "trials": 0, "best_score": None, "metric": metric,
                                      "started_at": round(self._started, 3), "updated_at": round(self._started, 3)}
        self._write()

    def phase(self, phase: Phase) -> None:
        """A new phase (ignored inside `holding`, except the terminal ones)."""
        with self._lock:
            if self._held is not None and phase not in TERMINAL:
                phase = self._held
            self._change(phase=Phase(phase).value)

    def search_started(self) -> None:
        with self._lock:
            self._change(trials=0, best_score=None)

    def trial(self, trials: int, best_score: float | None) -> None:
        """After a search trial: trials so far and the best score among them."""
        with self._lock:
            self._change(trials=int(trials), best_score=_score(best_score))

    @contextlib.contextmanager
    def holding(self, phase: Phase) -> Iterator[None]:
        """Everything inside is reported as `phase` (a whole training pass run again: `Phase.REFIT`)."""
        self.phase(phase)
        with self._lock:
            self._held = phase
        try:
            yield
        finally:
            with self._lock:
                self._held = None

    def _change(self, **values: Any) -> None:  # under the lock; the file is written when something changed
        if any(self.state[key] != value for key, value in values.items()):
            self.state.update(values)
            self._write()

    def _write(self) -> None:  # under the lock
        now = self._clock()
        self.state.update(elapsed_s=round(now - self._started, 3), updated_at=round(now, 3))
        snapshot = dict(self.state)
        if self.path is not None:
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            try:
                tmp.write_text(json.dumps(snapshot) + "\n")
                os.replace(tmp, self.path)
            except OSError:  # a report, not the product: training goes on (its outputs fail loudly on their own)
                pass
        if self._on_write is not None:
            self._on_write(snapshot)


def _score(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    # NaN or infinite: no trial scored yet (as `search_auc` is then null); 6 places, as the metrics round it
    return round(value, 6) if math.isfinite(value) else None


def file_progress(out: Path, *, budget_s: float, **kwargs: Any) -> TrainingProgress:
    """The progress of a job writing to `out` (`out/progress.json`)."""
    return TrainingProgress(Path(out) / PROGRESS_FILE, budget_s=budget_s, **kwargs)
