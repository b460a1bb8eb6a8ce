"""The training step for real: FLAML-searched LightGBM (bagged) on the bank-marketing slice, the MLflow model
it saves, the metrics, MLflow tracking in a local file store, and the job's process contract."""

from __future__ import annotations

import json
import pathlib
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from local.processes import PROJECT_ROOT
from shared.domain import schema
from shared.jobs.training import job
from shared.jobs.training.provenance import code_version
from shared.jobs.training.train import train
from shared.scoring.model_digest import folder_digest

METRIC_KEYS = {"auc", "accuracy", "f1", "auc_weighted", "evaluation", "cv_rows", "cv_refined", "model_rows",
               "budget_s", "seconds", "best_estimator", "best_config", "threshold", "threshold_rows", "day_counts",
               "search_auc", "search_trials", "prior_kept", "bag_size", "ensemble"}
SUMMARY_KEYS = METRIC_KEYS | {"dataset_version", "dataset_hash", "run_id", "seed", "features", "excluded_columns",
                              "code_version"}


@pytest.fixture(scope="module")
def real_data(bank_csv) -> bool:
    return bank_csv.name == "bankmarketing_train.csv"


@pytest.fixture(scope="module")
def trained(small_bank_csv, tmp_path_factory):
    """One job run (budget 5 s) from an empty working directory, logging to a local MLflow file store."""
    root = tmp_path_factory.mktemp("training")
    cwd, out, mlruns = root / "cwd", root / "out", root / "mlruns"
    cwd.mkdir()
    argv = ["--data", str(small_bank_csv), "--out", str(out), "--budget-s", "5", "--seed", "42",
            "--dataset-version", "7", "--dataset-hash", "sha256:abc", "--run-id", "run-test-1",
            "--mlflow-uri", mlruns.as_uri(), "--experiment", "bank-tests"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        code = job.main(argv)
    return {"code": code, "out": out, "cwd": cwd, "mlruns": mlruns,
            "status": json.loads((out / "status.json").read_text())}


def test_job_completes_and_reports_metrics(trained, real_data):
    assert trained["code"] == 0, trained["status"]
    status = trained["status"]
    assert status["status"] == "Completed" and status["error"] is None
    metrics = status["metrics"]
    assert set(metrics) >= METRIC_KEYS
    assert metrics["auc"] > (0.85 if real_data else 0.8)
    assert 0.8 < metrics["accuracy"] <= 1 and 0 <= metrics["f1"] <= 1
    assert metrics["auc_weighted"] == pytest.approx(metrics["auc"])
    held_out = metrics["evaluation_slice"]["rows"]
    assert 200 < held_out < 400  # ~10 % held out (by row hash) for champion/challenger
    assert metrics["cv_rows"] == metrics["threshold_rows"] == metrics["model_rows"] == 3000 - held_out
    assert metrics["best_estimator"] == "lgbm" and metrics["search_trials"] >= 1
    assert {"n_estimators", "num_leaves", "learning_rate"} <= set(metrics["best_config"])
    assert 0 < metrics["threshold"] < 1
    assert {m["estimator"] for m in metrics["ensemble"]["members"]} == {"lgbm"}
    assert len(metrics["ensemble"]["members"]) == metrics["bag_size"] >= 1
    assert metrics["budget_s"] == 5.0 and metrics["seconds"] > 0  # training times: bench/train_quality.py


def test_metrics_json_has_every_key(trained):
    summary = json.loads((trained["out"] / "metrics.json").read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["dataset_version"] == "7" and summary["dataset_hash"] == "sha256:abc"
    assert summary["run_id"] == "run-test-1" and summary["seed"] == 42
    assert summary["features"] == list(schema.FEATURES) and summary["excluded_columns"] == []
    assert summary["code_version"] == code_version() != ""


def test_nothing_is_written_to_the_working_directory(trained):
    assert list(trained["cwd"].iterdir()) == []


def test_saved_model_is_an_mlflow_model_with_pins_signature_and_example(trained):
    model_dir = trained["out"] / "model"
    assert (model_dir / "MLmodel").is_file()
    meta = (model_dir / "MLmodel").read_text()
    assert "python_function" in meta and "sklearn" in meta
    requirements = (model_dir / "requirements.txt").read_text().split()
    from importlib.metadata import version

    for name in ("scikit-learn", "lightgbm", "pandas", "numpy", "mlflow-skinny"):
        assert f"{name}=={version(name)}" in requirements
    assert not [r for r in requirements if r.startswith("xgboost")]  # only the search imports it
    from mlflow.models import Model

    mlmodel = Model.load(str(model_dir / "MLmodel"))
    assert mlmodel.get_input_schema().input_names() == list(schema.FEATURES)
    example = mlmodel.load_input_example(str(model_dir))
    assert len(example) == 5 and list(example.columns) == list(schema.FEATURES)


def test_pyfunc_reload_predicts(trained, small_bank_csv):
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(trained["out"] / "model"))
    frame = pd.read_csv(small_bank_csv, nrows=50)
    predictions = np.asarray(model.predict(frame[list(schema.FEATURES)]))
    assert predictions.shape == (50,) and set(np.unique(predictions)) <= {0, 1}
    import mlflow.sklearn

    pipeline = mlflow.sklearn.load_model(str(trained["out"] / "model"))
    p_yes = pipeline.predict_proba(frame)[:, 1]
    labels = (frame[schema.TARGET] == "yes").to_numpy()
    assert p_yes[labels].mean() > p_yes[~labels].mean()


def test_run_is_logged_to_the_mlflow_file_store(trained, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=trained["mlruns"].as_uri())
    experiment = client.get_experiment_by_name("bank-tests")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == trained["status"]["mlflow_run_id"]
    assert run.info.status == "FINISHED" and run.info.run_name == "run-test-1"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["budget_s"] == "5.0" and params["seed"] == "42"
    assert params["dataset_version"] == "7" and params["dataset_hash"] == "sha256:abc"
    assert params["excluded_columns"] == "" and "best_config.n_estimators" in params
    assert metrics["auc"] == pytest.approx(trained["status"]["metrics"]["auc"])
    assert tags["run_id"] == "run-test-1" and tags["dataset_version"] == "7" and tags["code_version"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model/MLmodel" in artifacts and "model/model.pkl" in artifacts


def test_job_scores_the_champion_on_the_same_held_out_rows(trained, small_bank_csv, tmp_path):
    first = trained["status"]["metrics"]["evaluation_slice"]
    assert first["champion"] is None and first["challenger"]["rows"] == first["rows"] and first["percent"] == 10
    out = tmp_path / "second"
    argv = ["--data", str(small_bank_csv), "--out", str(out), "--budget-s", "5", "--max-iter", "1",
            "--champion-model", str(trained["out"] / "model"), "--champion-version", "1"]
    assert job.main(argv) == 0
    second = json.loads((out / "metrics.json").read_text())["evaluation_slice"]
    assert second["rows"] == first["rows"] and second["champion"]["rows"] == first["rows"]
    assert second["champion"]["version"] == "1"
    # the content hash of the folder it scored: what the completion handler compares with the registered one
    assert second["champion"]["digest"] == folder_digest(trained["out"] / "model")
    # the first model scored on the same rows again: the figures it recorded for itself
    assert second["champion"]["auc"] == pytest.approx(first["challenger"]["auc"])
    assert second["champion"]["accuracy"] == pytest.approx(first["challenger"]["accuracy"])
    # the paired difference the gate reads, with its bootstrap standard error on those rows
    difference = second["difference"]
    assert difference["auc"] == pytest.approx(second["challenger"]["auc"] - second["champion"]["auc"], abs=2e-6)
    assert 0 < difference["se"] < 0.1 and difference["rounds"] == 200


def test_a_champion_that_cannot_be_loaded_is_recorded_not_fatal(small_bank_csv, tmp_path):
    out = tmp_path / "out"
    argv = ["--data", str(small_bank_csv), "--out", str(out), "--budget-s", "3", "--max-iter", "1",
            "--champion-model", str(tmp_path / "nowhere"), "--champion-version", "4"]
    assert job.main(argv) == 0
    evaluation = json.loads((out / "metrics.json").read_text())["evaluation_slice"]
    assert evaluation["champion"] is None and "does not exist" in evaluation["champion_error"]


def test_a_champion_whose_bytes_are_not_the_registered_ones_is_never_unpickled(trained, small_bank_csv, tmp_path):
    """The folder the service names is hashed before loading: a pickle swapped in after registration does not run."""
    registered = folder_digest(trained["out"] / "model")
    swapped = tmp_path / "model"
    shutil.copytree(trained["out"] / "model", swapped)
    marker = tmp_path / "the-pickle-ran"
    (swapped / "model.pkl").write_bytes(pickle.dumps(_Touch(str(marker))))
    base = ["--data", str(small_bank_csv), "--budget-s", "3", "--max-iter", "1", "--champion-model", str(swapped),
            "--champion-version", "1"]
    assert job.main([*base, "--out", str(tmp_path / "checked"), "--champion-digest", registered]) == 0
    evaluation = json.loads((tmp_path / "checked" / "metrics.json").read_text())["evaluation_slice"]
    assert evaluation["champion"] is None and "not loaded" in evaluation["champion_error"]
    assert registered in evaluation["champion_error"] and not marker.exists()
    # the same folder without the check is loaded (and its pickle runs): what the check prevents
    assert job.main([*base, "--out", str(tmp_path / "unchecked")]) == 0
    assert marker.exists()


class _Touch:
    """A pickle that creates a file when loaded."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_saved_model_loads_with_its_own_copy_of_the_code(trained, small_bank_csv, tmp_path):
    """A serving environment without this project (Azure ML no-code deployment, `mlflow models serve`) imports
    the pickled class from the model's `code/` folder."""
    model_dir = trained["out"] / "model"
    assert (model_dir / "code" / "shared" / "jobs" / "training" / "model.py").is_file()
    script = ("import sys, mlflow.pyfunc, pandas as pd; m = mlflow.pyfunc.load_model(sys.argv[1]); "
              "import shared; print(shared.__file__); print(list(m.predict(pd.read_csv(sys.argv[2], nrows=3))))")
    proc = subprocess.run([sys.executable, "-c", script, str(model_dir), str(small_bank_csv)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    where, predictions = proc.stdout.strip().splitlines()[-2:]
    assert where.startswith(str(model_dir / "code")) and predictions.startswith("[")


def test_same_seed_gives_the_same_search(small_bank_csv):
    """The time budget alone decides how many trials fit, which depends on machine load; `max_iter` (reached
    well inside the budget, even on a loaded 2-core machine) makes both FLAML searches, and so the ensemble,
    reproducible for a seed."""
    frame = pd.read_csv(small_bank_csv)
    first = train(frame, budget_s=180, seed=11, max_iter=6)
    second = train(frame, budget_s=180, seed=11, max_iter=6)
    assert first.best_config == second.best_config
    assert first.metrics["auc"] == second.metrics["auc"]
    probe = frame.head(20)
    np.testing.assert_array_equal(first.pipeline.predict_proba(probe), second.pipeline.predict_proba(probe))


def test_excluded_columns_are_left_out(small_bank_csv):
    frame = pd.read_csv(small_bank_csv)
    result = train(frame, budget_s=10, seed=1, exclude_columns=["duration", "day_of_week"], max_iter=3)
    assert "duration" not in result.features and "day_of_week" not in result.features
    assert result.excluded_columns == ["duration", "day_of_week"]
    probe = frame.drop(columns=["duration", "day_of_week"]).head(5)
    assert result.pipeline.predict_proba(probe).shape == (5, 2)


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.drop(columns=["y"]), "no target column 'y'"),
    (lambda f: f.assign(y="no"), "only one class ('no'"),
    (lambda f: f.assign(y=["maybe"] + ["no"] * (len(f) - 1)), "must be 'yes' or 'no'; 1 row(s) are not"),
    (lambda f: f.drop(columns=["age"]), "missing feature column(s): age"),
    (lambda f: f.assign(age=["x"] + [30] * (len(f) - 1)), "column 'age' must be numeric"),
])
def test_bad_frames_are_rejected_with_a_clear_error(small_bank_csv, mutate, message):
    frame = mutate(pd.read_csv(small_bank_csv, nrows=200))
    with pytest.raises(ValueError) as info:
        train(frame, budget_s=1)
    assert message in str(info.value)


def test_excluding_an_unknown_column_is_rejected(small_bank_csv):
    with pytest.raises(ValueError, match="cannot exclude unknown column"):
        train(pd.read_csv(small_bank_csv, nrows=200), budget_s=1, exclude_columns=["nope"])


def test_job_cli_fails_cleanly_on_a_csv_without_y(small_bank_csv, tmp_path):
    bad = tmp_path / "no_target.csv"
    pd.read_csv(small_bank_csv, nrows=50).drop(columns=["y"]).to_csv(bad, index=False)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "shared.jobs.training.job", "--data", str(bad), "--out", str(out),
                           "--budget-s", "5"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: training data has no target column 'y'")
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "Failed" and "no target column 'y'" in status["error"]
    assert status["metrics"] is None
    assert not (out / "model").exists()


def test_job_reports_a_missing_file_in_one_line(tmp_path, capsys):
    code = job.main(["--data", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "out"), "--budget-s", "5"])
    assert code == 1
    assert capsys.readouterr().err.strip() == f"error: data file not found: {tmp_path / 'absent.csv'}"
    assert json.loads((tmp_path / "out" / "status.json").read_text())["status"] == "Failed"


def test_the_job_reports_the_content_digest_of_its_final_model_folder(trained):
    """Written after the folder is final (reference profile, evaluation, MLflow logging included): what the
    registry records and every local load path checks."""
    from shared.scoring.model_digest import folder_digest

    digest = folder_digest(trained["out"] / "model")
    assert trained["status"]["metrics"]["model_digest"] == digest
    assert json.loads((trained["out"] / "metrics.json").read_text())["model_digest"] == digest


def _time_ordered(small_bank_csv, path: pathlib.Path) -> pd.DataFrame:
    """The slice in a time order: six stretches of rows, each with its own price index and employment."""
    df = pd.read_csv(small_bank_csv)
    stretch = np.arange(len(df)) * 6 // len(df)
    df["cons.price.idx"] = 92.0 + stretch * 0.311
    df["nr.employed"] = 5200.0 - stretch * 17.5
    df.to_csv(path, index=False)
    return df


def test_a_time_ordered_file_is_judged_on_its_newest_rows_then_refitted_on_all(trained, small_bank_csv, tmp_path):
    from shared.jobs.training.evaluate import score_frame
    from shared.scoring.runtime import ScoringModel

    data = tmp_path / "ordered.csv"
    df = _time_ordered(small_bank_csv, data)
    out = tmp_path / "out"
    argv = ["--data", str(data), "--out", str(out), "--budget-s", "5", "--champion-model",
            str(trained["out"] / "model"), "--champion-version", "1"]
    assert job.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    evaluation = metrics["evaluation_slice"]
    newest = df.iloc[len(df) - len(df) // 10:]
    assert evaluation["rule"] == "newest" and evaluation["rows"] == len(newest)
    assert evaluation["refit_rows"] == len(df) and metrics["model_rows"] == len(df)  # the saved model saw every row
    # the live model's figures are those of exactly the newest rows
    champion = score_frame(ScoringModel.load(trained["out"] / "model", version="1"), newest.reset_index(drop=True))
    assert evaluation["champion"]["auc"] == pytest.approx(champion["auc"])
    # the period columns are left out and the search replaced by the time-order configuration
    assert metrics["time_order"]["period_columns"] == ["cons.price.idx", "nr.employed"]
    assert {"cons.price.idx", "nr.employed"} <= set(metrics["excluded_columns"]) and metrics["search_trials"] == 0
    assert not (out / "held-out-fit").exists()


def test_the_hash_rule_can_be_chosen_for_a_time_ordered_file(small_bank_csv, tmp_path):
    data = tmp_path / "ordered.csv"
    df = _time_ordered(small_bank_csv, data)
    out = tmp_path / "out"
    assert job.main(["--data", str(data), "--out", str(out), "--budget-s", "3", "--evaluation-rows", "hash"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation_slice"]["rule"] == "hash" and "refit_rows" not in metrics["evaluation_slice"]
    assert metrics["model_rows"] == len(df) - metrics["evaluation_slice"]["rows"]  # hash rows never trained on
