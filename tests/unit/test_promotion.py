"""Champion/challenger policy and the held-out row rule (pure domain code)."""

from __future__ import annotations

import pandas as pd
import pytest

from shared.domain.evaluation_slice import row_bucket, split_frame
from shared.domain.promotion import KEPT_CHAMPION, PROMOTED, PromotionPolicy, decide

POLICY = PromotionPolicy(margin=0.005, floor=0.75)


def test_first_model_needs_only_the_floor():
    assert decide(POLICY, {"auc": 0.80}, None).outcome == PROMOTED
    low = decide(POLICY, {"auc": 0.70}, None)
    assert low.outcome == KEPT_CHAMPION and "below the floor 0.7500" in low.reason


@pytest.mark.parametrize(("new", "old", "outcome"), [
    (0.951, 0.950, PROMOTED),  # better
    (0.946, 0.950, PROMOTED),  # worse, but within the margin
    (0.944, 0.950, KEPT_CHAMPION),  # worse by more than the margin
    (0.74, 0.70, KEPT_CHAMPION),  # better than a bad champion, still under the floor
])
def test_challenger_against_champion(new, old, outcome):
    decision = decide(POLICY, {"auc": new}, {"auc": old}, champion_version=3)
    assert decision.outcome == outcome
    assert decision.challenger == {"auc": new} and decision.champion == {"auc": old}
    if outcome == KEPT_CHAMPION and new >= POLICY.floor:
        assert f"{new - old:+.4f}" in decision.reason and "v3" in decision.reason
    if outcome == PROMOTED:  # the audit says which: better (or equal), or worse but within the margin
        assert decision.reason.endswith("is not worse" if new >= old else "is within the margin 0.0050")


def test_missing_figures_never_promote_over_a_live_model():
    assert decide(POLICY, {}, {"auc": 0.9}, champion_version=1).outcome == KEPT_CHAMPION
    assert decide(POLICY, {"auc": float("nan")}, None).outcome == KEPT_CHAMPION
    unknown = decide(POLICY, {"auc": 0.95}, None, champion_version=2)
    assert unknown.outcome == KEPT_CHAMPION and "retrain promote" in unknown.reason


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="margin"):
        PromotionPolicy(margin=-0.1)
    with pytest.raises(ValueError, match="floor"):
        PromotionPolicy(floor=1.5)


def test_held_out_rows_depend_on_the_row_not_its_position_or_version():
    rows = pd.DataFrame({"a": [str(i) for i in range(4000)], "y": ["no", "yes"] * 2000})
    _, held = split_frame(rows, 10)
    assert 300 < len(held) < 500  # ~10 %
    held_values = set(rows.iloc[held]["a"])
    # a later version: shuffled, with new rows appended: the shared rows are held out exactly as before
    later = pd.concat([rows.sample(frac=1.0, random_state=3),
                       pd.DataFrame({"a": [f"new{i}" for i in range(500)], "y": ["no"] * 500})])
    _, held_later = split_frame(later, 10)
    later_values = set(later.iloc[held_later]["a"])
    assert held_values == {v for v in later_values if not v.startswith("new")}
    assert row_bucket(("1", "no")) == row_bucket(("1", "no")) and 0 <= row_bucket(("x",)) < 100
    assert len(split_frame(rows, 0)[1]) == 0


def test_a_loss_within_the_noise_of_the_rows_still_promotes():
    policy = PromotionPolicy(margin=0.005)
    # -0.0068 on its own is worse than the margin; with a measured SE of 0.008 it is within margin + 1 SE
    assert not decide(policy, {"auc": 0.8325}, {"auc": 0.8393}, champion_version=3).promote
    noisy = decide(policy, {"auc": 0.8325}, {"auc": 0.8393}, champion_version=3, noise=0.008)
    assert noisy.promote and "SE 0.0080" in noisy.reason and "+ 1 SE" in noisy.reason
    # a loss beyond margin + 1 SE is refused, and says so
    clear = decide(policy, {"auc": 0.80}, {"auc": 0.84}, champion_version=3, noise=0.008)
    assert not clear.promote and "worse by more than the margin 0.0050 + 1 SE" in clear.reason
    # no usable SE: the plain margin
    assert not decide(policy, {"auc": 0.8325}, {"auc": 0.8393}, champion_version=3, noise=float("nan")).promote
