"""Which rows of a dataset version are held out for champion/challenger evaluation.

Two rules (`EvaluationRows`): by row hash (below), or the newest rows of a file in time order, where a model
that learnt the newest period must be judged on the period after the one the live model knew.

A row is in the evaluation slice when the SHA-256 of its values (as written in the canonical CSV) falls in
the first `percent` of 100 buckets. The rule depends only on the row, not on its position or the dataset
version, so a row that appears in several versions is held out of every training run that sees it: neither the
live model (trained on an older version) nor the new one trained on the slice of the newest version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from enum import StrEnum

import numpy as np
import pandas as pd

DEFAULT_PERCENT = 10


class EvaluationRows(StrEnum):
    """Which rows the champion/challenger comparison holds out (EVALUATION_ROWS)."""

    HASH = "hash"  # `percent` of the rows by row hash: the same rows in every version, never trained on
    NEWEST = "newest"  # the last `percent` of the rows in file order: the newest period of a time-ordered file
    AUTO = "auto"  # NEWEST when the file is in time order (training.time_order finds period columns), else HASH

    @property
    def how(self) -> str:
        """How the held-out rows were chosen, as the job's log and the promotion reason say it."""
        return "the newest in file order" if self is EvaluationRows.NEWEST else "by row hash"


_SEPARATOR = "\x1f"  # unit separator: cannot occur in a canonical CSV field


def row_bucket(values: Sequence[str]) -> int:
    digest = hashlib.sha256(_SEPARATOR.join(values).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100


def evaluation_mask(rows: Iterable[Sequence[str]], percent: int = DEFAULT_PERCENT) -> np.ndarray:
    """True for rows in the evaluation slice; `rows` are the string values of each row, in column order."""
    if not 0 <= percent < 100:
        raise ValueError(f"evaluation percent must be between 0 and 99, got {percent}")
    return np.fromiter((row_bucket(r) < percent for r in rows), dtype=bool)


def split_frame(text_frame: pd.DataFrame, percent: int = DEFAULT_PERCENT) -> tuple[np.ndarray, np.ndarray]:
    """(training positions, evaluation positions) of a frame read with `dtype=str` (missing values as "")."""
    values = text_frame.fillna("").astype(str).itertuples(index=False, name=None)
    mask = evaluation_mask(values, percent)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def newest_split(rows: int, percent: int = DEFAULT_PERCENT) -> tuple[np.ndarray, np.ndarray]:
    """(training positions, evaluation positions): the last `percent` of `rows` in file order are evaluated."""
    if not 0 <= percent < 100:
        raise ValueError(f"evaluation percent must be between 0 and 99, got {percent}")
    cut = rows - (rows * percent) // 100
    return np.arange(cut), np.arange(cut, rows)
