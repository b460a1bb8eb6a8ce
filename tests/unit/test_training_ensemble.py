"""The training step's model: threshold stored and used, saved and reloaded with identical probabilities,
excluded columns left out, the same model for a seed with a bounded search, and the pieces it is built from
(the search from the prior, the out-of-fold evaluation, the bag).

Small data (2,000 rows) and budgets of at most 5 s with `max_iter` bounds, so the searches end well inside the
budget and are reproducible."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shared.domain import schema
from shared.jobs.training.features import prepare_features, target_labels
from shared.jobs.training.members import REFINE
from shared.jobs.training.mlflow_model import save_model
from shared.jobs.training.model import COUNT_FEATURE, BankEnsemble
from shared.jobs.training.search import BAGGING, PRIOR
from shared.jobs.training.threshold import accuracy_threshold
from shared.jobs.training.train import BAG, CV_FOLDS, train
from shared.scoring.runtime import ScoringModel


@pytest.fixture(scope="module")
def frame(small_bank_csv) -> pd.DataFrame:
    return pd.read_csv(small_bank_csv, nrows=2000)


@pytest.fixture(scope="module")
def trained(frame, tmp_path_factory):
    result = train(frame, budget_s=5, seed=3, max_iter=4)
    out = tmp_path_factory.mktemp("ensemble")
    model_dir = save_model(result, out, dataset_version="1", dataset_hash="h", run_id="r")
    return {"result": result, "out": out, "model_dir": model_dir}


def test_threshold_is_stored_with_the_model_and_in_metrics(trained):
    result = trained["result"]
    threshold = result.pipeline.threshold
    assert 0.0 < threshold < 1.0
    assert result.metrics["threshold"] == pytest.approx(threshold, abs=1e-6)
    summary = json.loads((trained["out"] / "metrics.json").read_text())
    assert summary["threshold"] == pytest.approx(threshold, abs=1e-6)
    assert {"auc", "accuracy", "f1", "auc_weighted", "ensemble"} <= set(summary)
    assert summary["auc_weighted"] == pytest.approx(summary["auc"])
    members = summary["ensemble"]["members"]
    assert members and {m["estimator"] for m in members} == {"lgbm"}
    assert sum(m["weight"] for m in members) == pytest.approx(1.0)
    assert len(members) == summary["bag_size"] == BAG  # 2,000 rows: time for the whole bag
    assert len({m["params"]["random_state"] for m in members}) == BAG  # one configuration, other seeds
    from mlflow.models import Model

    meta = Model.load(str(trained["model_dir"] / "MLmodel"))
    assert meta.metadata["threshold"] == pytest.approx(threshold)


def test_predict_uses_the_threshold(trained, frame):
    model = trained["result"].pipeline
    X = frame[list(schema.FEATURES)]
    p_yes = model.predict_proba(X)[:, 1]
    np.testing.assert_array_equal(model.predict(X), (p_yes > model.threshold).astype(int))
    shifted = BankEnsemble(threshold=0.9)
    shifted.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    assert shifted.predict(X).sum() <= model.predict(X).sum() or model.threshold >= 0.9


def test_runtime_labels_follow_the_threshold(trained, frame):
    scoring = ScoringModel.load(trained["model_dir"], "1")
    threshold = trained["result"].pipeline.threshold
    assert scoring.threshold == pytest.approx(threshold) and scoring.direct_path
    records = frame[list(schema.FEATURES)].head(300).to_dict(orient="records")
    answer = scoring.predict_records(records)
    assert answer["result"] == ["yes" if p > threshold else "no" for p in answer["probabilities"]]


def test_saved_ensemble_reloads_with_identical_probabilities(trained, frame):
    import mlflow.pyfunc
    import mlflow.sklearn

    original = trained["result"].pipeline
    X = frame[list(schema.FEATURES)]
    expected = original.predict_proba(X)
    reloaded = mlflow.sklearn.load_model(str(trained["model_dir"]))
    np.testing.assert_array_equal(reloaded.predict_proba(X), expected)
    labels = np.asarray(mlflow.pyfunc.load_model(str(trained["model_dir"])).predict(X))
    np.testing.assert_array_equal(labels, original.predict(X))
    scoring = ScoringModel.load(trained["model_dir"], "1")
    records = X.head(50).to_dict(orient="records")
    np.testing.assert_array_equal(scoring.predict_records(records)["probabilities"], expected[:50, 1])
    requirements = (trained["model_dir"] / "requirements.txt").read_text().split()
    assert not any(r.startswith(("xgboost-cpu==", "xgboost==")) for r in requirements)
    assert any(r.startswith("lightgbm==") for r in requirements)


def test_new_models_name_the_model_module_and_models_saved_before_the_move_still_load(trained, frame, tmp_path,
                                                                                        monkeypatch):
    """A model's pickle names the class by module. New models name `shared.jobs.training.model`; models saved
    before the training code moved there name `shared.training.train`, whose re-export keeps them loading."""
    import pickle
    import shutil

    from mlflow.models import Model

    meta = Model.load(str(trained["model_dir"] / "MLmodel"))
    assert meta.metadata["model_class"] == "shared.jobs.training.model.BankEnsemble"
    assert b"shared.jobs.training.model" in (trained["model_dir"] / "model.pkl").read_bytes()

    old = tmp_path / "model"
    shutil.copytree(trained["model_dir"], old)
    with monkeypatch.context() as mp:  # pickle it as the code before the move did
        mp.setattr(BankEnsemble, "__module__", "shared.training.train")
        (old / "model.pkl").write_bytes(pickle.dumps(trained["result"].pipeline))
    assert b"shared.training.train" in (old / "model.pkl").read_bytes()
    records = frame[list(schema.FEATURES)].head(50).to_dict(orient="records")
    expected = ScoringModel.load(trained["model_dir"], "1").predict_records(records)
    assert ScoringModel.load(old, "1").predict_records(records) == expected


def test_metrics_and_threshold_come_from_out_of_fold_predictions_of_every_row(trained, frame):
    metrics = trained["result"].metrics
    assert metrics["cv_rows"] == metrics["threshold_rows"] == metrics["model_rows"] == len(frame)
    assert metrics["evaluation"] == f"{CV_FOLDS}-fold out-of-fold" and metrics["cv_refined"] is True
    # the in-sample fit is better than what the model shows on rows it did not see
    model = trained["result"].pipeline
    y = (frame[schema.TARGET] == "yes").to_numpy(int)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, model.predict_proba(frame)[:, 1]) > metrics["auc"]


def test_out_of_fold_predictions_come_from_models_that_did_not_see_the_row(frame):
    from sklearn.metrics import roc_auc_score

    import shared.jobs.training.train as training

    X, y = prepare_features(frame, list(schema.FEATURES)), target_labels(frame)
    # A model that memorizes its rows: near-perfect on them, far from it on others.
    params = {"n_estimators": 300, "num_leaves": 256, "min_child_samples": 2, "min_child_weight": 1e-3,
              "learning_rate": 0.3, "verbose": -1, "n_jobs": 1}
    calls = []
    fit = training.fit_member

    def counting_fit(p, matrix, target):
        calls.append(len(matrix))
        return fit(p, matrix, target)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "fit_member", counting_fit)
        p_oof = training.out_of_fold(X, y, params, features=list(X.columns), day_counts=True, seed=0)
    assert len(calls) == CV_FOLDS and all(abs(n - len(X) * (CV_FOLDS - 1) / CV_FOLDS) <= 1 for n in calls)
    assert p_oof.shape == (len(X),) and ((p_oof >= 0) & (p_oof <= 1)).all()
    memorized = BankEnsemble()._encode_from(X, list(X.columns))
    matrix = memorized._matrix(memorized._frame_columns(X), leave_one_out=True)
    memorized.members_, memorized.weights_ = [("lgbm", fit(params, matrix, y))], [1.0]
    assert roc_auc_score(y, memorized._blend(matrix)) > 0.999
    assert roc_auc_score(y, p_oof) < 0.97


def test_the_search_starts_from_the_prior(frame):
    result = train(frame, budget_s=5, seed=3, max_iter=1)
    assert result.metrics["search_trials"] == 1 and result.metrics["prior_kept"] is True
    assert {k: result.best_config[k] for k in PRIOR} == pytest.approx(PRIOR)
    assert {k: result.best_config[k] for k in BAGGING} == BAGGING
    member = result.metrics["ensemble"]["members"][0]["params"]
    assert member["n_estimators"] == PRIOR["n_estimators"] * REFINE
    assert member["learning_rate"] == pytest.approx(PRIOR["learning_rate"] / REFINE)
    assert member["subsample"] == BAGGING["subsample"]


def test_without_time_left_the_evaluation_is_faster_and_the_bag_is_one_model(frame, monkeypatch):
    import shared.jobs.training.train as training

    monkeypatch.setattr(training.time, "perf_counter", _clock_after_search())
    result = train(frame, budget_s=1, seed=3)
    assert result.metrics["cv_refined"] is False and result.metrics["bag_size"] == 1
    assert result.metrics["cv_rows"] == len(frame) and 0 < result.metrics["threshold"] < 1


def _clock_after_search():
    """A perf_counter that jumps past a 1 s budget once called a few times (after the search starts)."""
    import time as real_time

    calls = {"n": 0}
    base = real_time.perf_counter

    def clock():
        calls["n"] += 1
        return base() + (100.0 if calls["n"] > 3 else 0.0)

    return clock


def test_day_counts_are_off_by_default_and_on_when_asked(trained, frame):
    default = trained["result"]
    assert default.pipeline.day_counts_ is None and COUNT_FEATURE not in default.pipeline.matrix_columns
    assert default.metrics["day_counts"] is False and default.metrics["ensemble"]["engineered_features"] == []
    result = train(frame, budget_s=5, seed=3, max_iter=2, day_counts=True)
    model = result.pipeline
    assert model.matrix_columns[-1] == COUNT_FEATURE and model.day_counts_
    assert result.metrics["day_counts"] is True
    assert result.metrics["ensemble"]["engineered_features"] == [COUNT_FEATURE]
    assert model.predict_proba(frame.head(5)).shape == (5, 2)


def test_excluded_columns_are_not_used(frame):
    result = train(frame, budget_s=5, seed=1, exclude_columns=["duration", "euribor3m"], max_iter=3,
                   day_counts=True)
    model = result.pipeline
    assert "duration" not in model.features_ and "euribor3m" not in model.features_
    assert COUNT_FEATURE not in model.matrix_columns  # its day key needs euribor3m
    probe = frame.drop(columns=["duration", "euribor3m", schema.TARGET]).head(5)
    assert model.predict_proba(probe).shape == (5, 2)
    assert result.metrics["ensemble"]["engineered_features"] == []


def test_same_seed_and_bounded_search_give_the_same_model(frame):
    """max_iter decides (reached well inside a budget no loaded 2-core machine exhausts), so a seed fixes the model."""
    first = train(frame, budget_s=180, seed=11, max_iter=4)
    second = train(frame, budget_s=180, seed=11, max_iter=4)
    assert first.metrics["ensemble"] == second.metrics["ensemble"]
    assert first.metrics["threshold"] == second.metrics["threshold"]
    probe = frame.head(200)
    np.testing.assert_array_equal(first.pipeline.predict_proba(probe), second.pipeline.predict_proba(probe))


def test_day_counts_leave_the_row_itself_out_in_training(frame):
    X = prepare_features(frame, list(schema.FEATURES))
    model = BankEnsemble()._encode_from(X, list(schema.FEATURES))
    columns = model._frame_columns(X)
    scoring = model._matrix(columns)[:, -1]
    training = model._matrix(columns, leave_one_out=True)[:, -1]
    np.testing.assert_array_equal(training, scoring - 1)
    assert scoring.min() >= 1
    unseen = {c: list(v[:1]) for c, v in columns.items()}
    unseen["euribor3m"] = [123.456]
    assert model._matrix(unseen)[0, -1] == 0


def test_accuracy_threshold_maximizes_accuracy_between_scores():
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8])
    cut = accuracy_threshold(y, p)
    assert cut == pytest.approx(0.5)  # between 0.4 and 0.6: 7 of 8 right, the best possible
    assert ((p > cut) == y).mean() == max(((p > t) == y).mean() for t in np.r_[0.0, p])
