"""The synthetic bank-marketing generator: schema, ranges, determinism, class balance and a learnable signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.domain import schema
from shared.domain.sample_data import generate_sample, write_sample_csv


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return generate_sample(6000, seed=7)


def test_columns_are_the_file_columns_in_order(sample):
    assert list(sample.columns) == list(schema.COLUMNS)
    assert len(sample) == 6000


def test_dtypes_and_levels(sample):
    for column, kind in schema.COLUMNS.items():
        if kind == "int":
            assert sample[column].dtype == np.int64, column
        elif kind == "float":
            assert sample[column].dtype == np.float64, column
        else:
            assert sample[column].notna().all(), column
    for column, levels in schema.LEVELS.items():
        assert set(sample[column]) <= set(levels), column
    assert set(sample[schema.TARGET]) == {"yes", "no"}


def test_realistic_ranges(sample):
    assert sample["age"].between(17, 98).all()
    assert sample["duration"].between(0, 4918).all() and 150 < sample["duration"].median() < 260
    assert sample["campaign"].between(1, 56).all()
    assert (sample["pdays"] == 999).mean() > 0.9
    assert ((sample["pdays"] == 999) | sample["pdays"].between(0, 27)).all()
    assert (sample.loc[sample["poutcome"] == "nonexistent", "previous"] == 0).all()
    assert (sample.loc[sample["poutcome"] != "nonexistent", "previous"] >= 1).all()
    macro = ["emp.var.rate", "cons.price.idx", "cons.conf.idx", "nr.employed"]
    combos = sample[["month", *macro]].drop_duplicates()
    assert 5 <= len(combos) <= 20  # a handful of joint economic regimes, each tied to a month
    assert sample["euribor3m"].between(0.6, 5.05).all()


def test_about_eleven_percent_yes(sample):
    assert 0.09 <= (sample[schema.TARGET] == "yes").mean() <= 0.13


def test_deterministic_for_a_seed():
    pd.testing.assert_frame_equal(generate_sample(500, seed=3), generate_sample(500, seed=3))
    assert not generate_sample(500, seed=3).equals(generate_sample(500, seed=4))


def test_signal_is_learnable(sample):
    """Even a single feature ranks well; duration and previous success drive `yes` as in the real data."""
    from sklearn.metrics import roc_auc_score

    y = (sample[schema.TARGET] == "yes").astype(int)
    assert roc_auc_score(y, sample["duration"]) > 0.75
    success = sample["poutcome"] == "success"
    assert y[success].mean() > 2 * y[~success].mean()
    assert y[sample["nr.employed"] < 5100].mean() > y[sample["nr.employed"] > 5100].mean()


def test_write_sample_csv_round_trips(tmp_path):
    path = write_sample_csv(tmp_path / "sub" / "bank.csv", rows=200, seed=1)
    assert path.exists()
    assert path.read_text().splitlines()[0] == ",".join(schema.COLUMNS)
    back = pd.read_csv(path)
    assert len(back) == 200 and list(back.columns) == list(schema.COLUMNS)
    pd.testing.assert_frame_equal(back, generate_sample(200, seed=1), check_dtype=False)


def test_rows_must_be_positive():
    with pytest.raises(ValueError, match="rows must be positive"):
        generate_sample(0, seed=1)
