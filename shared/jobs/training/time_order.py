"""Whether a training file is in time order, and which of its columns only name a stretch of time.

The bank-marketing file has no date column, but five macro-economic columns are set per month or per quarter.
In a file written in time order (cumulative snapshots that append each new period), such a column's values each
occur in one unbroken run of rows: the consumer price index names its month, `nr.employed` its quarter. A tree
splits on them to learn each past period's success rate, which says nothing about the next period (on the
prequential replay of the training file, leaving them out raised the mean AUC over the last six of ten periods
from 0.867 to 0.876; docs/training.md#time-order). In a shuffled file no column has that shape, so nothing is
detected and training is unchanged: the detection is also the test of whether the file has a time order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from shared.domain import schema

MIN_VALUES = 3  # a column with fewer distinct values names too few stretches to say anything
MAX_VALUE_SHARE = 0.05  # distinct values per row above this: a measurement, not a period's setting
RUN_SHARE = 0.99  # rows whose value occurs in a single run of rows, for the column to name periods


def period_columns(frame: pd.DataFrame, candidates: Sequence[str] | None = None) -> list[str]:
    """The numeric columns of `frame` (in its row order) whose values each occur in one unbroken run of rows,
    for at least RUN_SHARE of the rows, with MIN_VALUES or more distinct values. Categorical columns are never
    picked: a calendar name (`month`) repeats every year and still carries the season."""
    names = [c for c in (candidates or schema.NUMERIC) if c in frame.columns and c in schema.NUMERIC]
    found = []
    for name in names:
        values = frame[name].to_numpy()
        if len(values) < 2 * MIN_VALUES:
            continue
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        if not MIN_VALUES <= len(uniques) <= max(MIN_VALUES, MAX_VALUE_SHARE * len(values)):
            continue
        starts = np.r_[True, codes[1:] != codes[:-1]]
        runs = np.bincount(codes[starts], minlength=len(uniques))  # unbroken runs per value
        rows = np.bincount(codes, minlength=len(uniques))
        if rows[runs == 1].sum() >= RUN_SHARE * len(values):
            found.append(name)
    return found
