"""The saved model: a scikit-learn-compatible classifier (`predict_proba`, `predict` with its own threshold)
trained on labels `yes` -> 1 / `no` -> 0, which encodes its inputs itself into one float matrix for its trees.

Unpickling a saved model imports this module by name (`metadata.model_class`), and the model ships it in its
`code/` folder (MLflow `code_paths`, see `mlflow_model.MODEL_CODE`) so a serving environment without this project
can load it. So this module imports only NumPy, pandas, scikit-learn and `shared.domain.schema`: everything it
imports must be in MODEL_CODE or in the model's pinned requirements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from shared.domain import schema

DAY_KEY = ("euribor3m", "cons.price.idx", "month", "day_of_week")
COUNT_FEATURE = "contacts_same_day"


def day_key(euribor: Any, price: Any, month: Any, day_of_week: Any) -> tuple | None:
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
    `contacts_same_day`, how many training rows share the contact's day (`day_key`). Call volume per day
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
        raise NotImplementedError("BankEnsemble is assembled by shared.jobs.training.train.train(), not fitted")

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
            for key in map(day_key, *(X[c].tolist() for c in DAY_KEY)):
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
            matrix[:, -1] = [counts.get(key, 0) for key in map(day_key, *(columns[c] for c in DAY_KEY))]
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
            total += weight * member_proba(kind, model, matrix)
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
        return {"members": [{"estimator": kind, "weight": weight, "params": member_params(kind, model)}
                            for (kind, model), weight in zip(self.members_, self.weights_, strict=True)],
                "engineered_features": [COUNT_FEATURE] if self.day_counts_ is not None else [],
                "threshold": self.threshold}


def member_proba(kind: str, model: Any, matrix: np.ndarray) -> np.ndarray:
    if kind == "lgbm":
        return np.asarray(model.booster_.predict(matrix, num_threads=1), dtype=np.float64).reshape(-1)
    raise ValueError(f"unknown ensemble member kind {kind!r}")


def member_params(kind: str, model: Any) -> dict[str, Any]:
    keys = {"lgbm": ("n_estimators", "learning_rate", "num_leaves", "min_child_samples", "max_bin",
                     "colsample_bytree", "subsample", "reg_alpha", "reg_lambda", "random_state")}[kind]
    params = model.get_params()
    return {k: plain(params[k]) for k in keys if params.get(k) is not None}


def plain(value: Any) -> Any:
    """A NumPy scalar as the Python value (for JSON and MLflow params)."""
    if isinstance(value, np.generic):
        return value.item()
    return value
