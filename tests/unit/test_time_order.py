"""Which columns name a stretch of time (shared.jobs.training.time_order) and which rows are the newest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.domain.evaluation_slice import newest_split
from shared.jobs.training.time_order import period_columns


def months_frame(rows_per_month: int = 50, months: int = 8, seed: int = 0) -> pd.DataFrame:
    """Rows in time order: the price index set per month, the employment per quarter, age per row."""
    rng = np.random.default_rng(seed)
    month = np.repeat(np.arange(months), rows_per_month)
    return pd.DataFrame({
        "cons.price.idx": 93.0 + month * 0.137,
        "nr.employed": 5000.0 + (month // 3) * 20.0,
        "age": rng.integers(18, 90, len(month)),
        "euribor3m": rng.uniform(0.6, 5.0, len(month)).round(3),
        "month": np.array(["may", "jun", "jul", "aug"])[month % 4],
    })


def test_columns_set_per_month_or_quarter_are_found_in_a_time_ordered_file():
    assert period_columns(months_frame()) == ["cons.price.idx", "nr.employed"]


def test_a_shuffled_file_has_no_period_columns():
    shuffled = months_frame().sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert period_columns(shuffled) == []


def test_a_value_seen_again_later_is_not_one_stretch():
    frame = months_frame()
    frame.loc[frame.index[-40:], "nr.employed"] = 5000.0  # the first quarter's value comes back at the end
    assert "nr.employed" not in period_columns(frame)


def test_categorical_and_two_valued_columns_are_never_period_columns():
    frame = months_frame(months=2)  # two months: too few stretches to name periods
    assert period_columns(frame) == []
    assert "month" not in period_columns(months_frame())


def test_newest_split_holds_out_the_last_rows_in_file_order():
    train, held = newest_split(1000, 10)
    assert list(held) == list(range(900, 1000)) and list(train) == list(range(900))
    train, held = newest_split(1005, 10)
    assert len(held) == 100 and train[-1] + 1 == held[0] and held[-1] == 1004
    with pytest.raises(ValueError, match="between 0 and 99"):
        newest_split(10, 100)


def test_the_setting_offers_exactly_the_rules_the_job_knows():
    """EVALUATION_ROWS's choices are spelt out in shared.settings and `retrain train` (which import no pandas):
    the same rules."""
    from dataclasses import fields

    from shared.domain.evaluation_slice import EvaluationRows
    from shared.settings import Settings
    from tools.cli.training import EVALUATION_ROWS

    (declared,) = [f for f in fields(Settings) if f.name == "evaluation_rows"]
    assert set(declared.metadata["choices"]) == set(EVALUATION_ROWS) == {r.value for r in EvaluationRows}
