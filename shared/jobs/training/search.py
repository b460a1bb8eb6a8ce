"""FLAML's search of LightGBM configurations, from a known-good start, each trial scored by cross-validation.

FLAML is only used for the search (no MLflow autologging). When the caller follows the trials (`on_trial`), FLAML
writes its trial log (`log_file_name`, one JSON line per trial with `log_type="all"`) to a temporary folder, and a
thread reads it as it grows: FLAML's AutoML has no per-trial callback, and the trial log is its documented record
of each trial."""

from __future__ import annotations

import json
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shared.jobs.training.model import plain

SEARCH_FOLDS = 3  # CV folds scoring each search trial
# Where the search starts: a regularized LightGBM for tabular data of this size (31 leaves, at least 30 rows
# per leaf, half the columns per tree), in FLAML's search-space terms; refined it is 800 trees at 0.01.
PRIOR = {"n_estimators": 200, "num_leaves": 31, "min_child_samples": 30, "learning_rate": 0.04,
         "log_max_bin": 8, "colsample_bytree": 0.5, "reg_alpha": 1 / 1024, "reg_lambda": 1.0}
BAGGING = {"subsample": 0.8, "subsample_freq": 1}  # fixed, not searched: what makes the bag's members differ
MAX_SEARCH_TREES = 1000  # per search trial: bounds a trial's time, so the search ends near its budget


def flaml_automl_class():
    """`flaml.automl.AutoML`, or a clear error when FLAML's AutoML part cannot be imported.

    FLAML 2.7 imports XGBoost when `flaml.automl` loads, even though this step only searches LightGBM. The
    training environment therefore needs an XGBoost build; the CPU-only wheel (`xgboost-cpu`, ~5 MB) is
    enough, instead of `flaml[automl]`'s `xgboost` with its CUDA/NCCL wheels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from flaml.automl.automl import AutoML
    except ModuleNotFoundError as exc:
        raise RuntimeError(f"FLAML AutoML cannot be imported: missing module '{exc.name}' "
                           "(FLAML 2.7 needs XGBoost importable; install `xgboost-cpu`)") from exc
    return AutoML


class TrialLog:
    """Follows FLAML's trial log while the search runs: `on_trial(trials so far, best CV AUC so far)` after each
    new trial, from a thread polling the file every `poll_s` (the trials themselves take seconds), and once more
    from the caller's thread when the search has ended (`close`), so the last trial is never missed. The records
    are TrainingLogRecord's JSON (flaml/automl/training_log.py): `iter_per_learner` (trials of the learner so
    far) and `validation_loss` (1 - AUC for the roc_auc metric); the closing checkpoint record has neither."""

    def __init__(self, path: Path, on_trial: Callable[[int, float], None], *, poll_s: float = 0.25):
        self.path, self.on_trial, self.poll_s = path, on_trial, poll_s
        self.trials, self.best = 0, float("nan")
        self._offset, self._partial = 0, b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="flaml-trial-log", daemon=True)
        self._read_lock = threading.Lock()

    def start(self) -> TrialLog:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.read()

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.read()

    def read(self) -> None:
        """Take the complete lines written since the last read (a line being written waits for the next)."""
        with self._read_lock:
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(self._offset)
                    chunk = fh.read()
            except OSError:  # not created yet
                return
            self._offset += len(chunk)
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            changed = False
            for line in lines:
                try:
                    record = json.loads(line)
                    trials, loss = int(record["iter_per_learner"]), float(record["validation_loss"])
                except (ValueError, KeyError, TypeError):
                    continue  # the checkpoint record, or a line that is not a trial
                self.trials = max(self.trials, trials)
                if not 1.0 - loss <= self.best:  # also when best is NaN (no trial yet)
                    self.best = 1.0 - loss
                changed = True
            if changed:
                self.on_trial(self.trials, self.best)


def search(matrix: np.ndarray, y: np.ndarray, *, budget_s: float, max_iter: int | None, seed: int,
            n_jobs: int, on_trial: Callable[[int, float], None] | None = None) -> tuple[dict[str, Any], float, int]:
    """FLAML's LightGBM search from PRIOR, each trial scored by SEARCH_FOLDS-fold stratified CV AUC.

    Returns (config, its CV AUC, trials). A configuration replaces the prior only when its CV AUC is higher:
    on ~30k rows a single holdout's AUC varies by more than the differences between good configurations, so
    holdout-based searches tend to pick lucky ones. When not even the prior finished in time, the prior is
    returned with AUC NaN and 0 trials.

    `on_trial(trials so far, best CV AUC so far)` is called as trials end (from another thread; see TrialLog),
    last after the search with the same figures it returns."""
    from flaml import tune

    automl = flaml_automl_class()()
    settings = dict(task="classification", metric="roc_auc", estimator_list=["lgbm"], time_budget=float(budget_s),
                    max_iter=max_iter, seed=seed, n_jobs=n_jobs, verbose=0, mlflow_logging=False,
                    retrain_full=False, split_type="stratified", eval_method="cv", n_splits=SEARCH_FOLDS,
                    starting_points={"lgbm": dict(PRIOR)},
                    custom_hp={"lgbm": {**{k: {"domain": v} for k, v in BAGGING.items()},
                                        "n_estimators": {"domain": tune.lograndint(lower=4, upper=MAX_SEARCH_TREES),
                                                         "init_value": 4, "low_cost_init_value": 4}}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if on_trial is None:
            automl.fit(X_train=matrix, y_train=y, log_file_name="", **settings)
        else:
            with tempfile.TemporaryDirectory(prefix="flaml-trials-") as tmp:
                log = TrialLog(Path(tmp) / "trials.jsonl", on_trial).start()
                try:
                    automl.fit(X_train=matrix, y_train=y, log_file_name=str(log.path), log_type="all", **settings)
                finally:
                    log.close()
    config = {k: plain(v) for k, v in (automl.best_config or {}).items()}
    if not config:
        return {**PRIOR, **BAGGING}, float("nan"), 0
    config = {**BAGGING, **config}  # FLAML leaves fixed custom values out of best_config when nothing beat the start
    trials = int(getattr(automl, "_iter_per_learner", {}).get("lgbm", 0) or len(automl.config_history or {}))
    return config, 1.0 - float(automl.best_loss), trials
