"""The training step: FLAML searches LightGBM configurations from a known-good start, scoring each by
cross-validation; the chosen one is refined to a lower learning rate, evaluated out-of-fold on every row (the
reported metrics and the decision threshold), and fitted with a few seeds whose average is the saved MLflow
model (`BankEnsemble`).

The saved model is a scikit-learn-compatible classifier (`predict_proba`, `predict` with its own threshold)
trained on labels `yes` -> 1 / `no` -> 0. It encodes its inputs itself (category codes and, with
`train(day_counts=True)`, the engineered `contacts_same_day` count) into one float matrix for the tree
models, so it scores fast; loading it needs scikit-learn, LightGBM and this module (`shared.training.train`,
pickled by reference). FLAML is only used for the search and never writes files (no log file, no MLflow
autologging)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from shared.domain import schema

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
POSITIVE = schema.POSITIVE  # re-exported: the labels are defined in shared.domain.schema
NEGATIVE = schema.NEGATIVE
# Exact pins written into the MLflow model's requirements.txt / conda.yaml.
MODEL_REQUIREMENTS = ("scikit-learn", "lightgbm", "pandas", "numpy", "mlflow-skinny")
INPUT_EXAMPLE_ROWS = 5
DAY_KEY = ("euribor3m", "cons.price.idx", "month", "day_of_week")
COUNT_FEATURE = "contacts_same_day"
SEARCH_SHARE = 0.5  # of the budget for the FLAML search; the rest is for the evaluation and the final fits
SEARCH_FOLDS = 3  # CV folds scoring each search trial
CV_FOLDS = 5  # out-of-fold evaluation of the chosen configuration: the reported metrics and the threshold
# Where the search starts: a regularized LightGBM for tabular data of this size (31 leaves, at least 30 rows
# per leaf, half the columns per tree), in FLAML's search-space terms; refined it is 800 trees at 0.01.
PRIOR = {"n_estimators": 200, "num_leaves": 31, "min_child_samples": 30, "learning_rate": 0.04,
         "log_max_bin": 8, "colsample_bytree": 0.5, "reg_alpha": 1 / 1024, "reg_lambda": 1.0}
BAGGING = {"subsample": 0.8, "subsample_freq": 1}  # fixed, not searched: what makes the bag's members differ
REFINE = 4  # the model: learning rate / REFINE and REFINE x the trees of the found configuration
MAX_TREES = 4000
BAG = 3  # the model averages up to BAG fits of the configuration with different seeds
THRESHOLD_WINDOW = 0.05  # the threshold is the middle of the best accuracy plateau (see accuracy_threshold)
MAX_SEARCH_TREES = 1000  # per search trial: bounds a trial's time, so the search ends near its budget


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


def code_version() -> str:
    """`git rev-parse HEAD` of the project, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else "unknown"


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


# --------------------------------------------------------------------------------------------------- data


def _feature_list(exclude_columns: Sequence[str]) -> tuple[list[str], list[str]]:
    excluded = [c.strip() for c in exclude_columns if c and c.strip()]
    if schema.TARGET in excluded:
        raise ValueError(f"the target column '{schema.TARGET}' cannot be excluded")
    unknown = [c for c in excluded if c not in schema.FEATURES]
    if unknown:
        raise ValueError(f"cannot exclude unknown column(s) {', '.join(unknown)}; "
                         f"features are: {', '.join(schema.FEATURES)}")
    features = [c for c in schema.FEATURES if c not in excluded]
    if not features:
        raise ValueError("every feature column is excluded; nothing left to train on")
    return features, list(dict.fromkeys(excluded))


def _target(df: pd.DataFrame) -> np.ndarray:
    if schema.TARGET not in df.columns:
        columns = list(map(str, df.columns))
        hint = ""
        if len(columns) == 1 and ";" in columns[0]:
            hint = " (the header looks semicolon-separated; training expects a comma-separated file)"
        shown = ", ".join(columns[:25]) + (", ..." if len(columns) > 25 else "")
        raise ValueError(f"training data has no target column '{schema.TARGET}'{hint}; columns: {shown}")
    raw = df[schema.TARGET]
    labels = raw.astype("string").str.strip().str.lower()
    bad = labels.isna() | ~labels.isin([POSITIVE, NEGATIVE])
    if bad.any():
        examples = sorted({repr(v) for v in raw[bad].head(50).tolist()})[:5]
        raise ValueError(f"target column '{schema.TARGET}' must be '{POSITIVE}' or '{NEGATIVE}'; "
                         f"{int(bad.sum())} row(s) are not, e.g. {', '.join(examples)}")
    y = (labels == POSITIVE).to_numpy(dtype=np.int64)
    counts = {NEGATIVE: int((y == 0).sum()), POSITIVE: int((y == 1).sum())}
    if min(counts.values()) == 0:
        (present,) = [k for k, v in counts.items() if v]
        raise ValueError(f"target column '{schema.TARGET}' has only one class ('{present}', {len(y)} rows); "
                         f"training needs both '{POSITIVE}' and '{NEGATIVE}'")
    if min(counts.values()) < 10:
        raise ValueError(f"too few rows per class to train and evaluate ({counts}); need at least 10 of each")
    return y


def prepare_features(df: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The feature columns with training dtypes: int64 / float64 numerics, object strings for categoricals."""
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise ValueError(f"training data is missing feature column(s): {', '.join(missing)}")
    out = {}
    for column in features:
        kind = schema.COLUMNS[column]
        values = df[column]
        if kind in ("int", "float"):
            numeric = pd.to_numeric(values, errors="coerce")
            bad = numeric.isna() & values.notna()
            if bad.any():
                example = values[bad].iloc[0]
                raise ValueError(f"column '{column}' must be numeric; {int(bad.sum())} value(s) are not, "
                                 f"e.g. {example!r}")
            if kind == "int" and not numeric.isna().any() and (numeric == np.round(numeric)).all():
                out[column] = numeric.astype(np.int64)
            else:
                out[column] = numeric.astype(np.float64)
        else:
            present = values.notna().to_numpy()
            text = values.astype(str).to_numpy(dtype=object)
            out[column] = pd.Series(np.where(present, text, np.nan), index=df.index, dtype=object)
    return pd.DataFrame(out, index=df.index)


# ------------------------------------------------------------------------------------------------- model


def _day_key(euribor: Any, price: Any, month: Any, day_of_week: Any) -> tuple | None:
    """The calendar day a contact was made, as far as the data tells it: the 3-month Euribor changes daily and
    the consumer price index monthly, so together with month and weekday they single out one day."""
    try:
        return (round(float(euribor), 6), round(float(price), 6), str(month), str(day_of_week))
    except (TypeError, ValueError):
        return None


class BankEnsemble(ClassifierMixin, BaseEstimator):
    """The saved model: the average P(yes) of LightGBM models (one configuration, several seeds) on
    one float matrix, and a decision threshold for the label.

    The matrix holds the input features in `features_` order, categoricals as codes of their training levels
    (an unseen level -> -1, a missing value -> NaN), numerics as floats, and, when asked for
    (`train(day_counts=True)`) and the day columns are all features, one engineered column:
    `contacts_same_day`, how many training rows share the contact's day (`_day_key`). Call volume per day
    says a lot about whom the bank was calling (busy days are mass campaigns with low success rates), which
    trees cannot count by themselves; but records on days after the training data all get 0, so it only
    helps where the scored days are in the training data.

    `predict_proba` takes a DataFrame with (at least) the feature columns; `predict_proba_columns` takes
    {column: list of values} and is the scoring runtime's fast path for small batches. Both go through
    `_matrix`, so they give identical probabilities. Labels are 1 ("yes") where P(yes) > `threshold`.
    Built by `train()`; `fit` is not supported.
    """

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold

    def fit(self, X, y=None):  # noqa: ARG002 - the scikit-learn signature
        raise NotImplementedError("BankEnsemble is assembled by shared.training.train.train(), not fitted")

    # ---------------------------------------------------------------------------------------- assembly

    def _encode_from(self, X: pd.DataFrame, features: Sequence[str], *, day_counts: bool = True) -> BankEnsemble:
        """Learn the category codes (and, with `day_counts`, the day counts) from training rows `X`."""
        self.features_ = list(features)
        self.categories_ = {}
        for column in self.features_:
            if column in schema.CATEGORICAL:
                levels = sorted({v for v in X[column].tolist() if isinstance(v, str)})
                self.categories_[column] = {level: float(i) for i, level in enumerate(levels)}
        self.day_counts_ = None
        if day_counts and all(c in self.features_ for c in DAY_KEY):
            counts: dict[tuple, int] = {}
            for key in map(_day_key, *(X[c].tolist() for c in DAY_KEY)):
                if key is not None:
                    counts[key] = counts.get(key, 0) + 1
            self.day_counts_ = counts
        self.classes_ = np.array([0, 1])
        self.members_ = []
        self.weights_ = []
        return self

    @property
    def matrix_columns(self) -> list[str]:
        return self.features_ + ([COUNT_FEATURE] if self.day_counts_ is not None else [])

    def _matrix(self, columns: Mapping[str, Sequence], *, leave_one_out: bool = False) -> np.ndarray:
        """The model matrix for {column: values}. `leave_one_out` (training rows only): a row does not count
        itself among the contacts of its day, as a new contact scored later is not among the training rows."""
        n = len(columns[self.features_[0]])
        matrix = np.empty((n, len(self.matrix_columns)), dtype=np.float64)
        for j, column in enumerate(self.features_):
            values = columns[column]
            codes = self.categories_.get(column)
            if codes is None:
                matrix[:, j] = np.asarray(values, dtype=np.float64)
            else:
                matrix[:, j] = [codes.get(v, -1.0) if isinstance(v, str) else np.nan for v in values]
        if self.day_counts_ is not None:
            counts = self.day_counts_
            matrix[:, -1] = [counts.get(key, 0) for key in map(_day_key, *(columns[c] for c in DAY_KEY))]
            if leave_one_out:
                matrix[:, -1] = np.maximum(matrix[:, -1] - 1, 0)
        return matrix

    def _frame_columns(self, X: pd.DataFrame) -> dict[str, Sequence]:
        missing = [c for c in self.features_ if c not in X.columns]
        if missing:
            raise ValueError(f"missing feature column(s): {', '.join(missing)}")
        out: dict[str, Sequence] = {}
        for column in self.features_:
            if column in self.categories_:
                out[column] = X[column].tolist()
            else:
                out[column] = pd.to_numeric(X[column], errors="coerce").to_numpy(dtype=np.float64)
        return out

    # ----------------------------------------------------------------------------------------- predict

    def _blend(self, matrix: np.ndarray) -> np.ndarray:
        total = np.zeros(len(matrix), dtype=np.float64)
        for (kind, model), weight in zip(self.members_, self.weights_, strict=True):
            total += weight * _member_proba(kind, model, matrix)
        return np.clip(total, 0.0, 1.0)

    def predict_proba_columns(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        """P(yes) for {column: list of values} (Python int / float / str), without building a DataFrame."""
        return self._blend(self._matrix(columns))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p_yes = self._blend(self._matrix(self._frame_columns(X)))
        return np.column_stack([1.0 - p_yes, p_yes])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] > self.threshold).astype(np.int64)

    def describe(self) -> dict[str, Any]:
        return {"members": [{"estimator": kind, "weight": weight, "params": _member_params(kind, model)}
                            for (kind, model), weight in zip(self.members_, self.weights_, strict=True)],
                "engineered_features": [COUNT_FEATURE] if self.day_counts_ is not None else [],
                "threshold": self.threshold}


def _member_proba(kind: str, model: Any, matrix: np.ndarray) -> np.ndarray:
    if kind == "lgbm":
        return np.asarray(model.booster_.predict(matrix, num_threads=1), dtype=np.float64).reshape(-1)
    raise ValueError(f"unknown ensemble member kind {kind!r}")


def _member_params(kind: str, model: Any) -> dict[str, Any]:
    keys = {"lgbm": ("n_estimators", "learning_rate", "num_leaves", "min_child_samples", "max_bin",
                     "colsample_bytree", "subsample", "reg_alpha", "reg_lambda", "random_state")}[kind]
    params = model.get_params()
    return {k: _plain(params[k]) for k in keys if params.get(k) is not None}


def _native_params(config: Mapping[str, Any], *, seed: int, n_jobs: int, refine: bool = True) -> dict[str, Any]:
    """FLAML's search-space config as LGBMClassifier keyword arguments (FLAML's own mapping, e.g.
    log_max_bin -> max_bin), with a low-learning-rate refinement: learning rate / REFINE and REFINE times
    the trees (capped at MAX_TREES), which trades fit time for a smoother, slightly better model."""
    from flaml.automl.model import LGBMEstimator

    params = {k: _plain(v) for k, v in LGBMEstimator(task="binary", n_jobs=n_jobs, **dict(config)).params.items()}
    n_trees = int(params["n_estimators"])
    factor = max(1, min(REFINE, MAX_TREES // max(n_trees, 1))) if refine else 1
    params["n_estimators"] = n_trees * factor
    params["learning_rate"] = float(params["learning_rate"]) / factor
    params["random_state"] = seed
    params["verbose"] = -1
    return params


def _fit_member(params: Mapping[str, Any], matrix: np.ndarray, y: np.ndarray):
    from lightgbm import LGBMClassifier

    model = LGBMClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(matrix, y)
    model.set_params(n_jobs=1)  # scoring is mostly small batches: no thread-pool start-up per call
    return model


def accuracy_threshold(y: np.ndarray, p_yes: np.ndarray, *, window: float = 0.0) -> float:
    """The P(yes) cut that maximizes accuracy of `p > cut` on (y, p_yes).

    With `window` = 0, the exact best cut: halfway between the score at which the best accuracy is reached and
    the next lower score, so `>` and `>=` agree on these rows. With `window` > 0, the cut (on a 0.001 grid)
    whose accuracy averaged over cuts within +-`window` is highest: the middle of the best plateau. Near its
    maximum the accuracy curve is flat and jagged, so the exact best cut moves a lot with the rows' noise (from
    one seed to the next by 0.05 on 26,000 rows) while the plateau's middle does not.
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(y, p_yes, drop_intermediate=False)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    correct = tpr * positives + (1.0 - fpr) * negatives
    if window > 0:
        grid = np.round(np.arange(0.001, 1.0, 0.001), 3)
        # correct(cut) for `p > cut`: the ROC point of the lowest threshold still above the cut
        index = np.searchsorted(-thresholds, -grid, side="left") - 1
        at = np.where(index >= 0, correct[np.clip(index, 0, None)], negatives)
        k = max(1, int(round(window / 0.001)))
        smoothed = np.convolve(np.pad(at, k, mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), mode="valid")
        return float(grid[int(np.argmax(smoothed))])
    best = int(np.argmax(correct))  # first (highest) cut on ties
    if best == 0:
        return float(min(1.0, np.nextafter(thresholds[1], 2.0))) if len(thresholds) > 1 else 0.5
    lower = thresholds[best + 1] if best + 1 < len(thresholds) else 0.0
    return float((thresholds[best] + lower) / 2.0)


# ---------------------------------------------------------------------------------------------- training


def _search(matrix: np.ndarray, y: np.ndarray, *, budget_s: float, max_iter: int | None, seed: int,
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
    config = {k: _plain(v) for k, v in (automl.best_config or {}).items()}
    if not config:
        return {**PRIOR, **BAGGING}, float("nan"), 0
    config = {**BAGGING, **config}  # FLAML leaves fixed custom values out of best_config when nothing beat the start
    trials = int(getattr(automl, "_iter_per_learner", {}).get("lgbm", 0) or len(automl.config_history or {}))
    return config, 1.0 - float(automl.best_loss), trials


def _out_of_fold(X: pd.DataFrame, y: np.ndarray, params: Mapping[str, Any], *, features: Sequence[str],
                 day_counts: bool, seed: int) -> np.ndarray:
    """P(yes) of every row from a model (`params`) fitted on the other CV_FOLDS - 1 stratified folds, with the
    category codes and day counts learned from those rows, as a model meets new records."""
    from sklearn.model_selection import StratifiedKFold

    p = np.empty(len(X), dtype=np.float64)
    splitter = StratifiedKFold(min(CV_FOLDS, int(np.bincount(y).min())), shuffle=True, random_state=seed)
    for fit_pos, held_pos in splitter.split(np.zeros(len(X)), y):
        X_fit, X_held = X.iloc[fit_pos], X.iloc[held_pos]
        enc = BankEnsemble()._encode_from(X_fit, features, day_counts=day_counts)
        enc.members_ = [("lgbm", _fit_member(params, enc._matrix(enc._frame_columns(X_fit), leave_one_out=True),
                                             y[fit_pos]))]
        enc.weights_ = [1.0]
        p[held_pos] = enc._blend(enc._matrix(enc._frame_columns(X_held)))
    return p


def train(df: pd.DataFrame, *, budget_s: float, seed: int = 42, exclude_columns: Sequence[str] = (),
          max_iter: int | None = None, n_jobs: int | None = None, day_counts: bool = False) -> TrainResult:
    """Train the model within about `budget_s` seconds.

    1. Category codes (and, with `day_counts`, the engineered `contacts_same_day` count) are learned from the
       rows. `day_counts` is off by default: the count is only informative for records on days that are in
       the training data (as in a random-split CV); for later records (new days) it is 0 for every record,
       and on a chronological split of the bank-marketing file it did not help (see bench/train_quality.py
       --split time).
    2. FLAML searches LightGBM configurations for SEARCH_SHARE of the budget, starting from PRIOR and scoring
       each by SEARCH_FOLDS-fold CV AUC (`_search`).
    3. The chosen configuration is refined (learning rate / REFINE, REFINE x the trees) and fitted on all
       rows: the first member of the model.
    4. Evaluation: out-of-fold P(yes) of every row from CV_FOLDS stratified folds (`_out_of_fold`), with the
       refined configuration when the budget leaves time for it, otherwise the faster unrefined one
       (`cv_refined` says which). The reported AUC / accuracy / F1 are computed on these predictions, and the
       decision threshold is the one that maximizes their accuracy (one number chosen on all rows, so the
       accuracy is only slightly optimistic).
    5. Bagging: up to BAG - 1 more members, the same configuration with other seeds (rows and columns are
       subsampled per tree), while the budget lasts; the model averages their P(yes) (`bag_size`).

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
    features, excluded = _feature_list(exclude_columns)
    y = _target(df)
    X = prepare_features(df, features)
    n_jobs = n_jobs or n_jobs_default()

    model = BankEnsemble()._encode_from(X, features, day_counts=day_counts)
    matrix = model._matrix(model._frame_columns(X), leave_one_out=True)
    search_budget = max(0.2, budget_s * SEARCH_SHARE - (time.perf_counter() - started))
    config, search_auc, trials = _search(matrix, y, budget_s=search_budget, max_iter=max_iter, seed=seed,
                                         n_jobs=n_jobs)
    searched = time.perf_counter()

    params = _native_params(config, seed=seed, n_jobs=n_jobs)
    fit_started = time.perf_counter()
    model.members_ = [("lgbm", _fit_member(params, matrix, y))]
    model.weights_ = [1.0]
    full_fit_s = time.perf_counter() - fit_started

    # A fold fits (CV_FOLDS - 1) / CV_FOLDS of the rows: the whole evaluation costs about (CV_FOLDS - 1) full fits.
    # With `max_iter` (reproducible training) nothing after the search depends on the clock.
    fixed = max_iter is not None
    cv_refined = fixed or time.perf_counter() + (CV_FOLDS - 1) * full_fit_s <= deadline
    cv_params = params if cv_refined else _native_params(config, seed=seed, n_jobs=n_jobs, refine=False)
    p_oof = _out_of_fold(X, y, cv_params, features=features, day_counts=day_counts, seed=seed)
    threshold = accuracy_threshold(y, p_oof, window=THRESHOLD_WINDOW)
    model.threshold = threshold

    while len(model.members_) < BAG and (fixed or time.perf_counter() + full_fit_s <= deadline):
        bag_params = {**params, "random_state": seed + len(model.members_)}
        model.members_.append(("lgbm", _fit_member(bag_params, matrix, y)))
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


def synthetic_example(X: pd.DataFrame, rows: int = INPUT_EXAMPLE_ROWS) -> pd.DataFrame:
    """The model's input example: schema.SYNTHETIC_RECORDS in the training frame's columns and dtypes (so the
    inferred signature is the one the training data gives), never rows of the training data: the example is
    written into the model (input_example.json, serving_input_example.json) and shown by the scoring swagger."""
    records = [{c: r[c] for c in X.columns} for r in schema.SYNTHETIC_RECORDS[:rows]]
    frame = pd.DataFrame(records, columns=list(X.columns))
    return frame.astype({c: X[c].dtype for c in X.columns})


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


# ------------------------------------------------------------------------------------------------ saving


def pinned_requirements() -> list[str]:
    """`name==version` of what loading the model needs; for alternatives (the CPU-only XGBoost wheel or the
    full one), the installed distribution."""
    pins = []
    for entry in MODEL_REQUIREMENTS:
        names = entry if isinstance(entry, tuple) else (entry,)
        for name in names:
            try:
                pins.append(f"{name}=={metadata.version(name)}")
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            raise RuntimeError(f"none of {', '.join(names)} is installed; the model cannot be saved with pins")
    return pins


def save_model(result: TrainResult, out_dir: Path, *, dataset_version: str = "", dataset_hash: str = "",
               run_id: str = "", input_example: pd.DataFrame | None = None) -> Path:
    """Write `out_dir/model/` (an MLflow model: sklearn + pyfunc flavors, signature, 5-row synthetic input example,
    exact pins) and `out_dir/metrics.json`. Returns the model directory.

    The model is written to a temporary sibling first and renamed into place, so `out_dir/model` is either
    complete or absent; an existing one is replaced.
    """
    import mlflow.sklearn
    from mlflow.models import infer_signature

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    example = input_example if input_example is not None else result.input_example
    if example is None or example.empty:
        raise ValueError("an input example (a few feature rows) is needed to save the model")
    example = prepare_features(example, result.features).head(INPUT_EXAMPLE_ROWS).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mlflow's hint about integer columns and missing values
        signature = infer_signature(example, result.pipeline.predict(example))

    target = out_dir / "model"
    code = _model_code(Path(tempfile.mkdtemp(prefix=".code-", dir=out_dir)))
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out_dir))
    staging.rmdir()  # mlflow refuses to save into an existing directory
    try:
        with warnings.catch_warnings(), _quiet("mlflow.sklearn", "mlflow.models.model"):
            warnings.simplefilter("ignore")  # the pickle-format caution: skops is not part of the runtime
            mlflow.sklearn.save_model(
                result.pipeline, str(staging), serialization_format="pickle", signature=signature,
                input_example=example, pip_requirements=pinned_requirements(), code_paths=[str(code)],
                metadata={"dataset_version": str(dataset_version), "dataset_hash": dataset_hash,
                          "run_id": run_id, "features": list(result.features),
                          "positive_label": POSITIVE, "label_encoding": {NEGATIVE: 0, POSITIVE: 1},
                          "threshold": float(result.pipeline.threshold),
                          "model_class": f"{type(result.pipeline).__module__}.{type(result.pipeline).__qualname__}"})
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(code.parent, ignore_errors=True)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)

    summary = {
        **result.metrics,
        "dataset_version": str(dataset_version),
        "dataset_hash": dataset_hash,
        "run_id": run_id,
        "seed": result.seed,
        "budget_s": result.budget_s,
        "features": list(result.features),
        "excluded_columns": list(result.excluded_columns),
        "code_version": code_version(),
    }
    tmp = out_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    tmp.replace(out_dir / "metrics.json")
    return target


# What unpickling the model imports from this project: shipped inside the model (MLflow `code_paths`), so a
# serving environment without this project (an Azure ML no-code deployment, `mlflow models serve`) can load it.
MODEL_CODE = ("shared/__init__.py", "shared/domain/__init__.py", "shared/domain/schema.py",
              "shared/training/__init__.py", "shared/training/train.py")


def _model_code(folder: Path) -> Path:
    for relative in MODEL_CODE:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_ROOT / relative, target)
    return folder / "shared"


@contextlib.contextmanager
def _quiet(*loggers: str):
    """Silence MLflow's save-time advice (pickle vs skops) that it logs rather than warns."""
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


# --------------------------------------------------------------------------------------------- tracking


@contextlib.contextmanager
def _file_store_allowed(tracking_uri: str):
    """MLflow >= 3.x refuses the filesystem tracking store unless MLFLOW_ALLOW_FILE_STORE is set; the
    database stores need SQLAlchemy, which mlflow-skinny does not ship. Allow it for this call only."""
    is_file = tracking_uri.startswith("file:") or "://" not in tracking_uri
    previous = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    if is_file and previous is None:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if is_file and previous is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def log_to_mlflow(result: TrainResult, tracking_uri: str, experiment: str, run_name: str | None = None,
                  params: Mapping[str, Any] | None = None, model_dir: Path | None = None) -> str:
    """Record the run in MLflow tracking (a local `file:` store under `.local/mlruns` in the local stack):
    params (budget, seed, excluded columns, best_config.*, plus `params` such as dataset_version and
    dataset_hash), the numeric metrics, tags (run_id, dataset_version, code_version) and `model_dir` as the
    run's `model` artifacts. Returns the MLflow run id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    context = {k: v for k, v in (params or {}).items() if v is not None}
    all_params: dict[str, Any] = {
        "budget_s": result.budget_s,
        "seed": result.seed,
        "excluded_columns": ",".join(result.excluded_columns),
        "features": ",".join(result.features),
        "best_estimator": result.metrics.get("best_estimator", "lgbm"),
        **{f"best_config.{k}": v for k, v in result.best_config.items()},
        **context,
    }
    tags = {"run_id": str(context.get("run_id", "")), "dataset_version": str(context.get("dataset_version", "")),
            "code_version": code_version(), "mlflow.source.name": "shared.training.job"}
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in result.metrics.items()
               if isinstance(v, int | float) and not isinstance(v, bool)]

    with _file_store_allowed(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        run = client.create_run(experiment_id, run_name=run_name or None, tags=tags)
        mlflow_run_id = run.info.run_id
        try:
            client.log_batch(mlflow_run_id, metrics=metrics,
                             params=[Param(k, str(v)[:6000]) for k, v in all_params.items()],
                             tags=[RunTag(k, v) for k, v in tags.items()])
            if model_dir is not None:
                client.log_artifacts(mlflow_run_id, str(model_dir), artifact_path="model")
                metrics_file = Path(model_dir).parent / "metrics.json"
                if metrics_file.exists():
                    client.log_artifact(mlflow_run_id, str(metrics_file))
        except Exception:
            client.set_terminated(mlflow_run_id, status="FAILED")
            raise
        client.set_terminated(mlflow_run_id, status="FINISHED")
    return mlflow_run_id
