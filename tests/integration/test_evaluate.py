"""`retrain evaluate` on a file the model did not train on, in any dialect; clear errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tools import cli


@pytest.fixture(scope="module")
def split(small_bank_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    frame = pd.read_csv(small_bank_csv)
    train, test = frame.iloc[: len(frame) * 2 // 3], frame.iloc[len(frame) * 2 // 3:]
    train.to_csv(root / "train.csv", index=False)
    test.to_csv(root / "test.csv", index=False)
    test.to_csv(root / "test_uci.csv", index=False, sep=";", quoting=1)
    assert cli.main(["train", "--data", str(root / "train.csv"), "--out", str(root / "out"), "--budget-s", "2"]) == 0
    return root


def run_evaluate(capsys, *args):
    code = cli.main(["evaluate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_evaluate_prints_one_json_object_with_the_figures(split, capsys):
    code, out, _ = run_evaluate(capsys, "--model", str(split / "out" / "model"), "--data", str(split / "test.csv"),
                                "--json")
    assert code == 0
    figures = json.loads(out)
    assert set(figures) == {"rows", "auc", "accuracy", "f1", "auc_weighted"}
    test = pd.read_csv(split / "test.csv")
    assert figures["rows"] == len(test)
    assert 0.8 < figures["auc"] <= 1 and 0.85 < figures["accuracy"] <= 1
    assert figures["auc_weighted"] == pytest.approx(figures["auc"], abs=1e-9)  # binary: weighted OvR == AUC


def test_the_folder_train_wrote_is_accepted_as_the_model(split, capsys):
    """`retrain evaluate --model OUT` for `retrain train --out OUT`: the same figures as OUT/model."""
    _, inner, _ = run_evaluate(capsys, "--model", str(split / "out" / "model"), "--data", str(split / "test.csv"),
                               "--json")
    code, outer, _ = run_evaluate(capsys, "--model", str(split / "out"), "--data", str(split / "test.csv"), "--json")
    assert code == 0 and json.loads(outer) == json.loads(inner)


def test_auc_weighted_matches_sklearn_weighted_ovr():
    from shared.jobs.training.evaluate import auc_weighted

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    expected = roc_auc_score(np.eye(2)[y], np.column_stack([1 - p, p]), average="weighted")
    assert auc_weighted(y, p) == pytest.approx(expected, abs=1e-12)


def test_any_dialect_gives_the_same_figures(split, capsys):
    model = str(split / "out" / "model")
    _, comma, _ = run_evaluate(capsys, "--model", model, "--data", str(split / "test.csv"), "--json")
    _, uci, _ = run_evaluate(capsys, "--model", model, "--data", str(split / "test_uci.csv"), "--json")
    assert json.loads(comma) == json.loads(uci)


def test_bad_files_and_models_are_clear_errors(split, capsys, tmp_path):
    model = str(split / "out" / "model")
    unlabeled = tmp_path / "nolabel.csv"
    pd.read_csv(split / "test.csv").drop(columns=["y"]).to_csv(unlabeled, index=False)
    code, out, err = run_evaluate(capsys, "--model", model, "--data", str(unlabeled), "--json")
    assert code == 2 and out == ""
    assert err.strip() == ("retrain evaluate: cannot evaluate on this file: target column 'y' is missing; "
                           "a training file needs labels")
    code, _, err = run_evaluate(capsys, "--model", str(tmp_path), "--data", str(split / "test.csv"))
    assert code == 2 and "cannot load a model" in err and "Traceback" not in err
    code, _, err = run_evaluate(capsys, "--model", model, "--data", str(tmp_path / "missing.csv"))
    assert code == 2 and "is not a file" in err
