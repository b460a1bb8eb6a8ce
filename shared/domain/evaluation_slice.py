"""Which rows of a dataset version are held out for champion/challenger evaluation.

A row is in the evaluation slice when the SHA-256 of its values (as written in the canonical CSV) falls in
the first `percent` of 100 buckets. The rule depends only on the row, not on its position or the dataset
version, so a row that appears in several versions is held out of every training run that sees it: neither the
live model (trained on an older version) nor the new one trained on the slice of the newest version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

DEFAULT_PERCENT = 10
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
