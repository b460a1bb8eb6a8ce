"""The drift check's label rule: labels count only when every row of the window has one."""

from __future__ import annotations

import pandas as pd

from shared.domain import schema
from shared.domain.label_rule import as_compared, labelled
from shared.domain.profile import build_profile
from shared.domain.sample_data import generate_sample


def test_labels_count_only_when_every_row_is_labelled():
    frame = generate_sample(200, seed=1)
    whole = build_profile(frame)
    assert labelled(whole) and as_compared(whole) == (whole, True)

    some_missing = frame.astype({schema.TARGET: object})
    some_missing.loc[:9, schema.TARGET] = None
    partial = build_profile(some_missing, reference=whole)
    compared, counts = as_compared(partial)
    assert not labelled(partial) and not counts and compared.target is None and compared.rows == partial.rows

    unlabelled = build_profile(frame.drop(columns=[schema.TARGET]), reference=whole)
    assert not labelled(unlabelled) and as_compared(unlabelled)[0].target is None
    empty = build_profile(pd.DataFrame(columns=frame.columns), reference=whole)
    assert not labelled(empty)
