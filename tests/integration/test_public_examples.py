"""What a model shows is synthetic: the MLflow input examples and the scoring swagger (served without a key) carry
schema.SYNTHETIC_RECORDS, never rows of the training file, and the examples still fit the model's signature."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from local.scoring_server import swagger_document
from shared.domain import schema
from shared.jobs.training.mlflow_model import save_model
from shared.jobs.training.train import train
from shared.scoring.runtime import ScoringModel


def as_tuple(record) -> tuple:
    return tuple(record[c] for c in schema.FEATURES if c in record)


@pytest.fixture(scope="module")
def trained(small_bank_csv, tmp_path_factory):
    """A tiny model trained on a slice of the training file, saved as the job saves it."""
    result = train(pd.read_csv(small_bank_csv), budget_s=3, seed=3, max_iter=2, n_jobs=1)
    return result, save_model(result, tmp_path_factory.mktemp("public") / "out", dataset_version="1")


def test_synthetic_records_are_valid_and_not_training_rows(training_rows):
    frame = pd.DataFrame(list(schema.SYNTHETIC_RECORDS))
    assert list(frame.columns) == list(schema.FEATURES)
    for record in schema.SYNTHETIC_RECORDS:
        for column, levels in schema.LEVELS.items():
            assert record[column] in levels, (column, record[column])
        for column, (low, high) in schema.RANGES.items():
            assert (low is None or record[column] >= low) and (high is None or record[column] <= high), column
        assert as_tuple(record) not in training_rows
    assert schema.EXAMPLE_RECORD in schema.SYNTHETIC_RECORDS
    assert all(isinstance(r[c], int) for r in schema.SYNTHETIC_RECORDS for c, k in schema.COLUMNS.items()
               if k == "int")


def test_the_models_input_examples_are_synthetic_and_fit_its_signature(trained, training_rows):
    from mlflow.models import Model, validate_serving_input

    _, model_dir = trained
    example = json.loads((model_dir / "input_example.json").read_text())
    rows = [dict(zip(example["columns"], values, strict=True)) for values in example["data"]]
    assert rows and len(rows) == 5
    for row in rows:
        assert as_tuple(row) not in training_rows, "a training row is published in input_example.json"
        assert as_tuple(row) in {as_tuple(r) for r in schema.SYNTHETIC_RECORDS}
    serving = json.loads((model_dir / "serving_input_example.json").read_text())
    split = serving["dataframe_split"]
    for values in split["data"]:
        assert as_tuple(dict(zip(split["columns"], values, strict=True))) not in training_rows
    # the examples still validate against the model's signature (MLflow's own check) and score
    validate_serving_input(str(model_dir), json.dumps(serving))
    signature = Model.load(str(model_dir / "MLmodel")).signature
    assert signature.inputs.input_names() == list(schema.FEATURES)
    scored = ScoringModel.load(model_dir, "1").predict_records(rows)
    assert len(scored["result"]) == 5


def test_the_swagger_example_is_synthetic_even_for_a_model_saved_with_training_rows(trained, small_bank_csv,
                                                                                  tmp_path, training_rows):
    result, model_dir = trained
    leaky = save_model(result, tmp_path / "older", input_example=pd.read_csv(small_bank_csv, nrows=5))
    assert ScoringModel.load(leaky, "2").input_example[0] != schema.EXAMPLE_RECORD  # as an older model would
    for directory in (model_dir, leaky):
        document = swagger_document(ScoringModel.load(directory, "1"))
        text = json.dumps(document)
        frame = document["definitions"]["ServiceInput"]["example"]["input_data"]  # the one request format
        examples = [dict(zip(frame["columns"], row, strict=True)) for row in frame["data"]]
        for record in examples:
            assert as_tuple(record) not in training_rows
            assert record == {c: schema.EXAMPLE_RECORD[c] for c in record}
        assert str(schema.EXAMPLE_RECORD["euribor3m"]) in text
