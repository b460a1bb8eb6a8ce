"""Which figures the completion handler compares: "same rows, same champion" only when the run scored the bytes
the registry holds for the live model (content digests equal), the recorded figures otherwise."""

from __future__ import annotations

from shared.domain.promotion import PromotionPolicy
from shared.domain.records import ModelVersion
from shared.services.on_run_completed import compare

POLICY = PromotionPolicy(margin=0.005, floor=0.75)
DIGEST = "sha256:" + "1" * 64
OTHER = "sha256:" + "2" * 64


def live(digest: str = DIGEST, version: int = 3) -> ModelVersion:
    recorded = {"evaluation_slice": {"challenger": {"auc": 0.80, "rows": 300}}}
    return ModelVersion(version=version, run_id="r", dataset_version=1, model_dir="/m", metrics=recorded,
                        registered_at=0.0, digest=digest)


def metrics(champion: dict | None, auc: float = 0.90) -> dict:
    return {"auc": auc, "evaluation_slice": {"rows": 300, "challenger": {"auc": auc, "rows": 300},
                                             "champion": champion}}


def test_the_same_champion_bytes_compare_on_the_same_rows():
    decision = compare(POLICY, metrics({"auc": 0.93, "rows": 300, "version": "3", "digest": DIGEST}), live())
    assert "[basis: same_rows, " in decision.reason and decision.champion["auc"] == 0.93
    assert not decision.promote  # 0.90 against the champion's 0.93 on the same rows


def test_a_different_digest_is_not_the_same_champion_whatever_the_version_says():
    decision = compare(POLICY, metrics({"auc": 0.99, "rows": 300, "version": "3", "digest": OTHER}), live())
    assert "recorded_figures" in decision.reason and "content digest differs" in decision.reason
    assert decision.champion["auc"] == 0.80 and decision.promote  # the live model's own recorded figures


def test_no_digest_on_either_side_is_not_the_same_champion():
    unregistered = compare(POLICY, metrics({"auc": 0.99, "version": "3", "digest": DIGEST}), live(digest=""))
    assert "recorded_figures (the live v3 has no registered digest)" in unregistered.reason
    unhashed = compare(POLICY, metrics({"auc": 0.99, "version": "3"}), live())
    assert "recorded_figures" in unhashed.reason and "same_rows" not in unhashed.reason


def test_a_run_that_scored_an_older_live_model_says_so():
    decision = compare(POLICY, metrics({"auc": 0.99, "version": "2", "digest": OTHER}), live())
    assert "the run scored v2 but v3 is live now" in decision.reason


def test_a_run_that_did_not_score_the_champion_says_why():
    decision = compare(POLICY, {"evaluation_slice": {"challenger": {"auc": 0.9}, "champion": None,
                                                     "champion_error": "ChampionMismatch: not loaded"}}, live())
    assert "recorded_figures (ChampionMismatch: not loaded)" in decision.reason
