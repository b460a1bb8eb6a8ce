"""A first drift check: per-column distances between the training data and newer data.

Numeric columns: Wasserstein distance normalized by the reference standard deviation; categorical
columns: Jensen-Shannon distance (base 2) of the category frequencies. A column drifts above `threshold`
(0.1, as Azure ML model monitoring and Evidently default to); the data drifts when the share of drifted
columns reaches `share`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from shared.domain import schema


@dataclass
class DriftResult:
    drifted: bool
    drift_share: float
    columns: dict[str, dict] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    verdict: str = ""


def wasserstein_normalized(reference: np.ndarray, current: np.ndarray) -> float:
    ref = np.sort(reference.astype(float))
    cur = np.sort(current.astype(float))
    grid = np.sort(np.concatenate([ref, cur]))
    deltas = np.diff(grid)
    ref_cdf = np.searchsorted(ref, grid[:-1], side="right") / len(ref)
    cur_cdf = np.searchsorted(cur, grid[:-1], side="right") / len(cur)
    distance = float(np.sum(np.abs(ref_cdf - cur_cdf) * deltas))
    scale = float(np.std(ref))
    return distance / scale if scale > 0 else distance


def jensen_shannon(reference: pd.Series, current: pd.Series) -> float:
    levels = sorted(set(reference.unique()) | set(current.unique()))
    p = reference.value_counts(normalize=True).reindex(levels, fill_value=0).to_numpy()
    q = current.value_counts(normalize=True).reindex(levels, fill_value=0).to_numpy()
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return float(np.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2)))


def compare(reference: pd.DataFrame, current: pd.DataFrame, *, threshold: float = 0.1, share: float = 0.5,
            min_rows: int = 100) -> DriftResult:
    rows = {"reference": len(reference), "current": len(current)}
    if len(current) < min_rows or len(reference) < min_rows:
        return DriftResult(drifted=False, drift_share=0.0, rows=rows,
                           verdict=f"not enough data (need {min_rows} rows on each side)")
    columns: dict[str, dict] = {}
    for column in schema.FEATURES:
        if column in schema.NUMERIC:
            score = wasserstein_normalized(reference[column].to_numpy(), current[column].to_numpy())
            metric = "wasserstein_normalized"
        else:
            score = jensen_shannon(reference[column].astype(str), current[column].astype(str))
            metric = "jensen_shannon"
        columns[column] = {"metric": metric, "score": round(score, 6), "threshold": threshold,
                           "drifted": score > threshold}
    drifted_cols = [c for c, v in columns.items() if v["drifted"]]
    drift_share = len(drifted_cols) / len(columns)
    drifted = drift_share >= share
    verdict = (f"{len(drifted_cols)}/{len(columns)} columns drifted ({drift_share:.0%}, limit {share:.0%})"
               + (f": {', '.join(drifted_cols[:8])}" if drifted_cols else ""))
    return DriftResult(drifted=drifted, drift_share=round(drift_share, 4), columns=columns, rows=rows,
                       verdict=verdict)
