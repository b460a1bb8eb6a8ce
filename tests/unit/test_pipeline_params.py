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


# ------------------------------------------------------------------------------ the caller allowlist


def test_a_caller_may_set_only_the_allowlisted_parameters():
    chosen = pipeline_params.validate_caller({"time_budget_s": "120", "seed": 7, "exclude_columns": ["duration"],
                                              "primary_metric": "AUC_weighted"})
    assert chosen == {"time_budget_s": 120, "seed": 7, "exclude_columns": "duration", "primary_metric": "AUC_weighted"}
    assert set(pipeline_params.CALLER_PARAMETERS) == {"time_budget_s", "seed", "exclude_columns", "primary_metric"}


@pytest.mark.parametrize("name", [n for n in pipeline_params.PARAMETERS if n not in pipeline_params.CALLER_PARAMETERS])
def test_every_other_pipeline_parameter_is_refused_from_a_caller_by_name(name):
    value = {"integer": 3, "reason": "http"}.get(pipeline_params.PARAMETERS[name].kind, "/etc")
    with pytest.raises(ParameterError) as info:
        pipeline_params.validate_caller({"seed": 1, name: value})
    assert info.value.name == name and "set by the service" in str(info.value)


def test_a_caller_budget_is_capped_by_the_setting():
    assert pipeline_params.validate_caller({"time_budget_s": 1800}) == {"time_budget_s": 1800}
    for budget, cap in ((1801, pipeline_params.DEFAULT_MAX_TIME_BUDGET_S), (86400, 1800), (61, 60)):
        with pytest.raises(ParameterError, match=f"must be at most {cap} .*MAX_TIME_BUDGET_S"):
            pipeline_params.validate_caller({"time_budget_s": budget}, max_time_budget_s=cap)
    with pytest.raises(ParameterError, match="unknown parameter; a caller may set time_budget_s"):
        pipeline_params.validate_caller({"budget": 1})
    with pytest.raises(ParameterError, match="must be an object"):
        pipeline_params.validate_caller(["seed"])


# ------------------------------------------------------------------------------ no text becomes code

HOSTILE = ["x; rm -rf /", "$(id)", "`id`", "a | nc evil 1", "a && b", "line\nbreak", "tab\there", "${{inputs.seed}}",
           "'quoted'", '"quoted"', "back\\slash", "a b", "-" * 3 + "data=/etc/passwd", "\x00", "\u2028", "..",
           "../../etc/passwd", "x" * 2000, ""]


def _string_parameters():
    return [n for n, p in pipeline_params.PARAMETERS.items() if p.kind in ("string", "reason", "columns", "metric")]


def test_every_string_parameter_has_a_pattern_or_an_enum():
    for name in _string_parameters():
        kind = pipeline_params.PARAMETERS[name].kind
        assert name in pipeline_params.PATTERNS or kind in ("reason", "columns", "metric"), name


@pytest.mark.parametrize("name", _string_parameters())
def test_hostile_text_is_refused_for_every_string_parameter(name):
    for value in HOSTILE:
        if name == "exclude_columns" and not value.strip():
            assert validate({name: value}) == {name: ""}  # blank: no column left out, the default
            continue
        with pytest.raises(ParameterError) as info:
            validate({name: value})
        assert info.value.name == name, value
        assert len(str(info.value)) < 400  # bounded whatever the input


def test_what_the_service_really_sends_passes():
    sent = {"trigger_id": "http-1733531234567-1a2b3c4d", "reason": "drift", "dataset_name": "bankmarketing",
            "drift_report": "reports/2026/12/07/tmr-1733531234567-1a2b3c4d.html",
            "champion_model": "/work/main/.local/pipeline-runs/3f2a/outputs/model",
            "champion_digest": "sha256:" + "ab" * 32, "champion_version": "2",
            "dataset_uri": "https://acct.blob.core.windows.net/datasets/bank/v3/data.csv"}
    assert validate(sent) == {**sent, "champion_version": 2}
    assert validate({"champion_model": "azureml://subscriptions/s/resourcegroups/r/workspaces/w/datastores/"
                                       "workspaceblobstore/paths/azureml/job-1/model_dir/model"})


@pytest.mark.parametrize("reason", ["nightly", "ci", "HTTP", "http ", "upload;id", 3])
def test_the_pipeline_reason_is_a_trigger_kind(reason):
    with pytest.raises(ParameterError, match="must be one of upload, drift, http, manual"):
        validate({"reason": reason})
    assert [r.value for r in pipeline_params.Reason] == ["upload", "drift", "http", "manual"]


# ------------------------------------------------------------------------------ nothing nasty gets past a 400

NASTY = ["²", "٣", "1" * 400, "9" * 5000, "0x10", "1e3", " ", "", "NaN", "Infinity", "-0", "\ud800", "\U0001F600",
         float("nan"), float("inf"), -float("inf"), 1e308, 10 ** 400, -(10 ** 400), True, None, [], {}, [1], {"a": 1},
         ["duration", 3], ["\ud800"], 1.5]


def test_nasty_values_raise_only_parameter_errors_with_a_bounded_message():
    for name in pipeline_params.PARAMETERS:
        for value in NASTY:
            try:
                validate({name: value})
            except ParameterError as exc:
                assert len(str(exc)) < 600, (name, value)
                str(exc).encode("utf-8")  # storable in an audit row (no lone surrogate)
        with pytest.raises(ParameterError) as info:
            validate({name * 10000: 1})
        assert len(str(info.value)) < 2000


def test_integers_are_ascii_digits_only():
    for raw in ("²", "٣", "1" * 19, "1" * 400):
        with pytest.raises(ParameterError, match="must be an integer"):
            validate({"seed": raw})
    assert validate({"seed": " 12 "}) == {"seed": 12}
