"""The training step's model: FLAML searches LightGBM configurations from a known-good start, scoring each by
cross-validation; the chosen one is refined to a lower learning rate, evaluated out-of-fold on every row (the
reported metrics and the decision threshold), and fitted with a few seeds whose average is the model
(`BankEnsemble`, in `model`).

The pieces: `features` (the data as the model sees it), `search` (FLAML), `members` (one LightGBM fit),
`threshold` (the decision threshold); saving is `mlflow_model`, tracking `tracking`."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shared.domain import schema
from shared.jobs.training.features import feature_list, prepare_features, synthetic_example, target_labels
from shared.jobs.training.members import fit_member, native_params
from shared.jobs.training.model import BankEnsemble
from shared.jobs.training.progress import Phase, TrainingProgress
from shared.jobs.training.search import BAGGING, PRIOR, SEARCH_FOLDS, search
from shared.jobs.training.threshold import THRESHOLD_WINDOW, accuracy_threshold

SEARCH_SHARE = 0.5  # of the budget for the FLAML search; the rest is for the evaluation and the final fits
CV_FOLDS = 5  # out-of-fold evaluation of the chosen configuration: the reported metrics and the threshold
BAG = 3  # the model averages up to BAG fits of the configuration with different seeds
# The configuration for data in time order (no search): shallower trees and larger leaves than PRIOR, refined to
# 400 trees at 0.02. FLAML's search scores trials by random-split CV, which on time-ordered data rewards
# configurations that memorise periods: on the prequential replay the searched model's mean AUC was 0.850, this
# fixed one's 0.867-0.876 (docs/training.md#time-order).
TIME_CONFIG = {**PRIOR, **BAGGING, "n_estimators": 100, "num_leaves": 15, "min_child_samples": 50,
               "learning_rate": 0.08}


@dataclass
class TrainResult:
    pipeline: Any  # BankEnsemble: predict_proba(DataFrame) -> [P(no), P(yes)], predict -> 1 for "yes"
    metrics: dict[str, Any]
    features: list[str]
    excluded_columns: list[str] = field(default_factory=list)
    seed: int = 42
    budget_s: float = 0.0
    best_config: dict[str, Any] = field(default_factory=dict)
    input_example: pd.DataFrame | None = None  # synthetic rows (features only), training dtypes


def n_jobs_default() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def out_of_fold(X: pd.DataFrame, y: np.ndarray, params: Mapping[str, Any], *, features: Sequence[str],
                 day_counts: bool, seed: int) -> np.ndarray:
    """P(yes) of every row from a model (`params`) fitted on the other CV_FOLDS - 1 stratified folds, with the
    category codes and day counts learned from those rows, as a model meets new records."""
    from sklearn.model_selection import StratifiedKFold

    p = np.empty(len(X), dtype=np.float64)
    splitter = StratifiedKFold(min(CV_FOLDS, int(np.bincount(y).min())), shuffle=True, random_state=seed)
    for fit_pos, held_pos in splitter.split(np.zeros(len(X)), y):
        X_fit, X_held = X.iloc[fit_pos], X.iloc[held_pos]
        enc = BankEnsemble()._encode_from(X_fit, features, day_counts=day_counts)
        enc.members_ = [("lgbm", fit_member(params, enc._matrix(enc._frame_columns(X_fit), leave_one_out=True),
                                             y[fit_pos]))]
        enc.weights_ = [1.0]
        p[held_pos] = enc._blend(enc._matrix(enc._frame_columns(X_held)))
    return p


def train(df: pd.DataFrame, *, budget_s: float, seed: int = 42, exclude_columns: Sequence[str] = (),
          max_iter: int | None = None, n_jobs: int | None = None, day_counts: bool = False,
          period_columns: Sequence[str] | None = None, progress: TrainingProgress | None = None) -> TrainResult:
    """Train the model within about `budget_s` seconds.

    1. Category codes (and, with `day_counts`, the engineered `contacts_same_day` count) are learned from the
       rows. `day_counts` is off by default: the count is only informative for records on days that are in
       the training data (as in a random-split CV); for later records (new days) it is 0 for every record,
       and on a chronological split of the bank-marketing file it did not help (see bench/train_quality.py
       --split time).
    2. FLAML searches LightGBM configurations for SEARCH_SHARE of the budget, starting from PRIOR and scoring
       each by SEARCH_FOLDS-fold CV AUC (`search.search`).
    3. The chosen configuration is refined (learning rate / REFINE, REFINE x the trees) and fitted on all
       rows: the first member of the model.
    4. Evaluation: out-of-fold P(yes) of every row from CV_FOLDS stratified folds (`out_of_fold`), with the
       refined configuration when the budget leaves time for it, otherwise the faster unrefined one
       (`cv_refined` says which). The reported AUC / accuracy / F1 are computed on these predictions, and the
       decision threshold is the one that maximizes their accuracy (one number chosen on all rows, so the
       accuracy is only slightly optimistic).
    5. Bagging: up to BAG - 1 more members, the same configuration with other seeds (rows and columns are
       subsampled per tree), while the budget lasts; the model averages their P(yes) (`bag_size`).

    `period_columns` (the data is in time order; `time_order.period_columns`): those columns are left out and
    the search is replaced by TIME_CONFIG (step 2 is skipped).

    `progress` (the job's `progress.json`) is told each phase and, through FLAML's trial log, each search trial;
    its search figures end as `search_trials` and `search_auc`.

    `budget_s` is a target: one search trial, the evaluation and one final fit always run. Reproducibility:
    with `max_iter` reached well inside the budget, the search, and so the configuration, threshold and model,
    are the same for a seed (the evaluation is then always refined and the bag always full, whatever the
    clock says). With the time budget alone, how many trials fit (and so what is found) and the bag size depend
    on the machine's speed and load.
    """
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    started = time.perf_counter()
    deadline = started + budget_s
    if budget_s <= 0:
        raise ValueError(f"budget_s must be positive, got {budget_s}")
    if max_iter is not None and max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    time_ordered = period_columns is not None
    features, excluded = feature_list(list(exclude_columns) + list(period_columns or ()))
    y = target_labels(df)
    X = prepare_features(df, features)
    n_jobs = n_jobs or n_jobs_default()

    model = BankEnsemble()._encode_from(X, features, day_counts=day_counts)
    matrix = model._matrix(model._frame_columns(X), leave_one_out=True)
    search_budget = max(0.2, budget_s * SEARCH_SHARE - (time.perf_counter() - started))
    if time_ordered:
        config, search_auc, trials = dict(TIME_CONFIG), float("nan"), 0
    else:
        if progress is not None:
            progress.search_started()
            progress.phase(Phase.SEARCHING)
        config, search_auc, trials = search(matrix, y, budget_s=search_budget, max_iter=max_iter, seed=seed,
                                             n_jobs=n_jobs, on_trial=progress.trial if progress is not None else None)
    searched = time.perf_counter()
    if progress is not None:
        progress.trial(trials, search_auc)  # what the metrics say (search_trials, search_auc)
        progress.phase(Phase.FITTING)

    # On time-ordered data the category codes are split on as categories (LightGBM's native categorical splits),
    # not as ordered numbers: on the replay that was 0.870 against 0.851 mean AUC (docs/training.md#time-order).
    categorical = {"categorical_feature": [j for j, c in enumerate(features) if c in schema.CATEGORICAL]} \
        if time_ordered else {}
    params = {**native_params(config, seed=seed, n_jobs=n_jobs), **categorical}
    fit_started = time.perf_counter()
    model.members_ = [("lgbm", fit_member(params, matrix, y))]
    model.weights_ = [1.0]
    full_fit_s = time.perf_counter() - fit_started

    # A fold fits (CV_FOLDS - 1) / CV_FOLDS of the rows: the whole evaluation costs about (CV_FOLDS - 1) full fits.
    # With `max_iter` (reproducible training) nothing after the search depends on the clock.
    fixed = max_iter is not None
    cv_refined = fixed or time.perf_counter() + (CV_FOLDS - 1) * full_fit_s <= deadline
    cv_params = params if cv_refined else {**native_params(config, seed=seed, n_jobs=n_jobs, refine=False),
                                           **categorical}
    if progress is not None:
        progress.phase(Phase.EVALUATING)
    p_oof = out_of_fold(X, y, cv_params, features=features, day_counts=day_counts, seed=seed)
    threshold = accuracy_threshold(y, p_oof, window=THRESHOLD_WINDOW)
    model.threshold = threshold

    if progress is not None:
        progress.phase(Phase.FITTING)
    while len(model.members_) < BAG and (fixed or time.perf_counter() + full_fit_s <= deadline):
        bag_params = {**params, "random_state": seed + len(model.members_)}
        model.members_.append(("lgbm", fit_member(bag_params, matrix, y)))
    model.weights_ = [1.0 / len(model.members_)] * len(model.members_)

    predicted = (p_oof > threshold).astype(np.int64)
    auc = float(roc_auc_score(y, p_oof))
    # Azure ML's AUC_weighted: per-class one-vs-rest AUCs weighted by class support; for two classes both
    # per-class AUCs equal the positive-class AUC, so it equals `auc` (computed the same way as Azure).
    auc_weighted = float(roc_auc_score(np.column_stack([1 - y, y]), np.column_stack([1 - p_oof, p_oof]),
                                       average="weighted"))
    metrics: dict[str, Any] = {
        "auc": round(auc, 6),
        "accuracy": round(float(accuracy_score(y, predicted)), 6),
        "f1": round(float(f1_score(y, predicted, zero_division=0)), 6),
        "auc_weighted": round(auc_weighted, 6),
        "accuracy_at_0_5": round(float(accuracy_score(y, (p_oof > 0.5).astype(np.int64))), 6),
        "evaluation": f"{CV_FOLDS}-fold out-of-fold",
        "cv_rows": len(y),
        "cv_refined": bool(cv_refined),
        "threshold": round(threshold, 6),
        "threshold_rows": len(y),
        "day_counts": bool(model.day_counts_ is not None),
        "search_auc": round(search_auc, 6) if math.isfinite(search_auc) else None,
        "search_folds": SEARCH_FOLDS,
        "search_trials": trials,
        "time_order": {"period_columns": list(period_columns), "config": "TIME_CONFIG"} if time_ordered else None,
        "prior_kept": all(math.isclose(config.get(k, math.nan), v, rel_tol=1e-9) for k, v in PRIOR.items()),
        "bag_size": len(model.members_),
        "model_rows": len(X),
        "positive_rate": round(float(y.mean()), 6),
        "budget_s": float(budget_s),
        "search_seconds": round(searched - started, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "best_estimator": "lgbm",
        "best_config": config,
        "ensemble": model.describe(),
    }
    return TrainResult(pipeline=model, metrics=metrics, features=features, excluded_columns=excluded,
                       seed=seed, budget_s=float(budget_s), best_config=config,
                       input_example=synthetic_example(X))
