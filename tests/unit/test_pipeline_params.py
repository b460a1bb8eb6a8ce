"""Pipeline parameters: the names the issue fixes, typed, and every bad one named in the error."""

from __future__ import annotations

import pytest

from shared.domain import pipeline_params
from shared.domain.pipeline_params import ParameterError, validate, with_defaults


def test_the_documented_names_are_accepted_and_parsed():
    parsed = validate({"dataset_version": "3", "time_budget_s": 60, "primary_metric": "AUC_weighted",
                       "exclude_columns": "duration", "seed": "7", "experiment_name": "bank-retrain"})
    assert parsed == {"dataset_version": 3, "time_budget_s": 60, "primary_metric": "AUC_weighted",
                      "exclude_columns": "duration", "seed": 7, "experiment_name": "bank-retrain"}
    assert with_defaults({})["primary_metric"] == "AUC_weighted"
    assert with_defaults({})["time_budget_s"] == 60


@pytest.mark.parametrize(("assignments", "name", "text"), [
    ({"budget": 60}, "budget", "unknown parameter"),
    ({"time_budget_s": "sixty"}, "time_budget_s", "must be an integer; got 'sixty'"),
    ({"time_budget_s": 0}, "time_budget_s", "must be at least 1"),
    ({"time_budget_s": True}, "time_budget_s", "must be an integer"),
    ({"seed": 1.5}, "seed", "must be an integer"),
    ({"seed": -1}, "seed", "must be at least 0"),
    ({"primary_metric": "auc"}, "primary_metric", "must be one of AUC_weighted"),
    ({"exclude_columns": "duration,shoe_size"}, "exclude_columns", "unknown column(s) shoe_size"),
    ({"dataset_version": "v2"}, "dataset_version", "must be an integer"),
    ({"experiment_name": "bad name!"}, "experiment_name", "letters, digits"),
    ({"seed": None}, "seed", "must not be null"),
])
def test_bad_parameters_are_named(assignments, name, text):
    with pytest.raises(ParameterError) as info:
        validate(assignments)
    assert info.value.name == name
    assert str(info.value).startswith(f"parameter '{name}': ") and text in str(info.value)


def test_exclude_columns_accepts_a_list_and_refuses_everything():
    assert validate({"exclude_columns": ["duration", "pdays", "duration"]}) == {"exclude_columns": "duration,pdays"}
    with pytest.raises(ParameterError, match="cannot exclude every feature"):
        validate({"exclude_columns": ",".join(pipeline_params.schema.FEATURES)})
