"""The training data as the model sees it: which columns are features, the target as 0/1, the feature columns
with training dtypes, and the synthetic input example saved with the model.

Bad data is reported as a `ValueError` with a one-line message (the job prints it without a traceback)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from shared.domain import schema

INPUT_EXAMPLE_ROWS = 5


def feature_list(exclude_columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the features in schema order without the excluded ones, the excluded ones once each)."""
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


def target_labels(df: pd.DataFrame) -> np.ndarray:
    """The target as 1 (`yes`) / 0 (`no`); both classes with at least 10 rows each, or a ValueError."""
    if schema.TARGET not in df.columns:
        columns = list(map(str, df.columns))
        hint = ""
        if len(columns) == 1 and ";" in columns[0]:
            hint = " (the header looks semicolon-separated; training expects a comma-separated file)"
        shown = ", ".join(columns[:25]) + (", ..." if len(columns) > 25 else "")
        raise ValueError(f"training data has no target column '{schema.TARGET}'{hint}; columns: {shown}")
    raw = df[schema.TARGET]
    labels = raw.astype("string").str.strip().str.lower()
    bad = labels.isna() | ~labels.isin([schema.POSITIVE, schema.NEGATIVE])
    if bad.any():
        examples = sorted({repr(v) for v in raw[bad].head(50).tolist()})[:5]
        raise ValueError(f"target column '{schema.TARGET}' must be '{schema.POSITIVE}' or '{schema.NEGATIVE}'; "
                         f"{int(bad.sum())} row(s) are not, e.g. {', '.join(examples)}")
    y = (labels == schema.POSITIVE).to_numpy(dtype=np.int64)
    counts = {schema.NEGATIVE: int((y == 0).sum()), schema.POSITIVE: int((y == 1).sum())}
    if min(counts.values()) == 0:
        (present,) = [k for k, v in counts.items() if v]
        raise ValueError(f"target column '{schema.TARGET}' has only one class ('{present}', {len(y)} rows); "
                         f"training needs both '{schema.POSITIVE}' and '{schema.NEGATIVE}'")
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


def synthetic_example(X: pd.DataFrame, rows: int = INPUT_EXAMPLE_ROWS) -> pd.DataFrame:
    """The model's input example: schema.SYNTHETIC_RECORDS in the training frame's columns and dtypes (so the
    inferred signature is the one the training data gives), never rows of the training data: the example is
    written into the model (input_example.json, serving_input_example.json) and shown by the scoring swagger."""
    records = [{c: r[c] for c in X.columns} for r in schema.SYNTHETIC_RECORDS[:rows]]
    frame = pd.DataFrame(records, columns=list(X.columns))
    return frame.astype({c: X[c].dtype for c in X.columns})
