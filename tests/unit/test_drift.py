"""The first drift check's distances agree with SciPy's reference implementations."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from shared.domain.drift import compare, jensen_shannon, wasserstein_normalized


def test_wasserstein_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.normal(0, 1, rng.integers(50, 500))
        b = rng.normal(rng.uniform(-1, 1), rng.uniform(0.5, 2), rng.integers(50, 500))
        expected = wasserstein_distance(a, b) / np.std(a)
        assert abs(wasserstein_normalized(a, b) - expected) <= 1e-9 * max(1.0, expected)


def test_jensen_shannon_matches_scipy():
    rng = np.random.default_rng(1)
    levels = list("abcdef")
    for _ in range(20):
        a = pd.Series(rng.choice(levels, 300, p=rng.dirichlet(np.ones(6))))
        b = pd.Series(rng.choice(levels[:4], 200))
        allv = sorted(set(a) | set(b))
        p = a.value_counts(normalize=True).reindex(allv, fill_value=0)
        q = b.value_counts(normalize=True).reindex(allv, fill_value=0)
        assert abs(jensen_shannon(a, b) - jensenshannon(p, q, base=2)) < 1e-9


def test_same_data_does_not_drift_and_shifted_data_does(small_bank_csv):
    df = pd.read_csv(small_bank_csv)
    half = len(df) // 2
    same = compare(df.iloc[:half], df.iloc[half:])
    assert not same.drifted and same.drift_share < 0.2
    shifted = df.iloc[half:].copy()
    for column in ("age", "duration", "campaign", "euribor3m", "nr.employed", "cons.price.idx", "emp.var.rate",
                   "cons.conf.idx", "pdays", "previous"):
        shifted[column] = shifted[column] * 1.5 + shifted[column].std() * 2
    for column in ("job", "marital", "education", "month", "day_of_week"):
        shifted[column] = "unknown"
    drifted = compare(df.iloc[:half], shifted)
    assert drifted.drifted and drifted.drift_share >= 0.5
    assert drifted.columns["age"]["drifted"] and drifted.columns["age"]["metric"] == "wasserstein_normalized"


def test_small_windows_give_no_verdict(small_bank_csv):
    df = pd.read_csv(small_bank_csv)
    result = compare(df, df.iloc[:10], min_rows=100)
    assert not result.drifted and result.verdict.startswith("not enough data")
