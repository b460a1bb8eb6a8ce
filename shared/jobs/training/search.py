"""FLAML's search of LightGBM configurations, from a known-good start, each trial scored by cross-validation.

FLAML is only used for the search and never writes files (no log file, no MLflow autologging)."""

from __future__ import annotations

import warnings
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


def search(matrix: np.ndarray, y: np.ndarray, *, budget_s: float, max_iter: int | None, seed: int,
            n_jobs: int) -> tuple[dict[str, Any], float, int]:
    """FLAML's LightGBM search from PRIOR, each trial scored by SEARCH_FOLDS-fold stratified CV AUC.

    Returns (config, its CV AUC, trials). A configuration replaces the prior only when its CV AUC is higher:
    on ~30k rows a single holdout's AUC varies by more than the differences between good configurations, so
    holdout-based searches tend to pick lucky ones. When not even the prior finished in time, the prior is
    returned with AUC NaN and 0 trials."""
    from flaml import tune

    automl = flaml_automl_class()()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        automl.fit(X_train=matrix, y_train=y, task="classification", metric="roc_auc", estimator_list=["lgbm"],
                   time_budget=float(budget_s), max_iter=max_iter, seed=seed, n_jobs=n_jobs, verbose=0,
                   log_file_name="", mlflow_logging=False, retrain_full=False, split_type="stratified",
                   eval_method="cv", n_splits=SEARCH_FOLDS, starting_points={"lgbm": dict(PRIOR)},
                   custom_hp={"lgbm": {**{k: {"domain": v} for k, v in BAGGING.items()},
                                       "n_estimators": {"domain": tune.lograndint(lower=4, upper=MAX_SEARCH_TREES),
                                                        "init_value": 4, "low_cost_init_value": 4}}})
    config = {k: plain(v) for k, v in (automl.best_config or {}).items()}
    if not config:
        return {**PRIOR, **BAGGING}, float("nan"), 0
    config = {**BAGGING, **config}  # FLAML leaves fixed custom values out of best_config when nothing beat the start
    trials = int(getattr(automl, "_iter_per_learner", {}).get("lgbm", 0) or len(automl.config_history or {}))
    return config, 1.0 - float(automl.best_loss), trials
