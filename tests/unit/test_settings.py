"""shared/settings.py: each setting declared once, read by that declaration, documented from it.

docs/settings.md must equal what the declaration generates (a setting added without regenerating the page fails
here); every declared setting is read from its own environment variable with its own type; malformed values,
out-of-range numbers and broken combinations stop start-up with an error naming the setting.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

import shared.settings as settings_module
from shared.settings import RULES, SECRETS, Settings, SettingsError, declared_fields, default_of

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "settings.md"
# What from_env needs to pass its checks across settings in either mode and pipeline kind.
VALID = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "PIPELINE_ENDPOINT_URL": "http://127.0.0.1:1/submit",
         "AZURE_SUBSCRIPTION_ID": "sub", "AZURE_RESOURCE_GROUP": "rg", "AZUREML_WORKSPACE_NAME": "ws",
         "AZUREML_WORKSPACE_ID": "/subscriptions/sub/resourceGroups/rg/providers/x/workspaces/ws"}


def other_value(f) -> tuple[str, Any]:
    """A value for the setting, unlike its default and valid for it: (as the environment holds it, as parsed)."""
    default, env = default_of(f), f.metadata["env"]
    if f.metadata["choices"]:
        choice = next(c for c in f.metadata["choices"] if c != default)
        return f"  {choice.upper()} ", choice  # choices are stripped and lower-cased
    if f.type == "int":
        value = default + 1
        return str(value), value
    if f.type == "float":
        value = default + 0.25
        return repr(value), value
    if f.type == "tuple[str, ...]":
        return f" {env.lower()}_a , {env.lower()}_b,,", (f"{env.lower()}_a", f"{env.lower()}_b")
    if f.type == "Mapping[str, float]":
        return "age=0.2, euribor3m = 1.5", {"age": 0.2, "euribor3m": 1.5}
    assert f.type == "str", f"{f.name}: no test value for type {f.type}"
    return f"value-of-{env}", f"value-of-{env}"


def test_the_page_is_generated_from_the_declaration():
    expected = settings_module.reference_markdown()
    assert PAGE.read_text(encoding="utf-8") == expected, (
        f"docs/settings.md is not what shared/settings.py declares: run `{settings_module.GENERATOR}`")


def test_the_command_in_the_page_header_writes_the_page():
    header = PAGE.read_text(encoding="utf-8").splitlines()[2]
    assert f"`{settings_module.GENERATOR}`" in header
    out = subprocess.run([sys.executable, "-m", "shared.settings", "--markdown"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out == PAGE.read_text(encoding="utf-8")


def test_the_generator_refuses_other_arguments():
    run = subprocess.run([sys.executable, "-m", "shared.settings"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode != 0
    assert settings_module.GENERATOR in run.stderr
    assert not run.stdout


def test_the_page_lists_every_setting_secret_and_other_setting_once():
    page = PAGE.read_text(encoding="utf-8")
    names = [f.metadata["env"] for f in declared_fields()] + [s.name for s in SECRETS + settings_module.OTHER_SETTINGS]
    for name in names:
        assert page.count(f"\n| `{name}` |") == 1, name
    for f in declared_fields():
        assert f"| `{f.metadata['env']}` | `{f.name}` |" in page
    for rule in RULES:
        assert f"\n- {rule.message}\n" in page


def test_every_field_but_extra_is_a_declared_setting_with_a_meaning():
    declared = {f.name for f in declared_fields()}
    assert {f.name for f in fields(Settings)} - declared == {"extra"}
    for f in declared_fields():
        assert f.metadata["doc"].strip(), f.name
        assert "|" not in f.metadata["doc"], f"{f.name}: a `|` breaks the table"
    assert not {s.name for s in SECRETS} & {f.metadata["env"] for f in declared_fields()}, "a secret is a field"


@pytest.mark.parametrize("f", declared_fields(), ids=lambda f: f.metadata["env"])
def test_each_setting_is_read_from_its_variable(f):
    raw, parsed = other_value(f)
    assert parsed != default_of(f)
    settings = Settings.from_env({**VALID, f.metadata["env"]: raw})
    assert getattr(settings, f.name) == parsed
    for other in declared_fields():  # and no other field moved
        if other.name != f.name and other.metadata["env"] not in VALID:
            assert getattr(settings, other.name) == default_of(other), other.name


def test_every_setting_round_trips_at_once():
    env, expected = dict(VALID), {}
    for f in declared_fields():
        env[f.metadata["env"]], expected[f.name] = other_value(f)
    settings = Settings.from_env(env)
    assert {f.name: getattr(settings, f.name) for f in declared_fields()} == expected
    assert settings.extra == env


def test_unset_settings_take_the_dataclass_defaults():
    minimal = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "PIPELINE_ENDPOINT_URL": "http://x/jobs",
               "AZUREML_WORKSPACE_ID": VALID["AZUREML_WORKSPACE_ID"]}
    from_env = Settings.from_env(minimal)
    assert from_env == Settings(storage_connection=minimal["AzureWebJobsStorage"],
                                pipeline_endpoint_url=minimal["PIPELINE_ENDPOINT_URL"],
                                azureml_workspace_id=minimal["AZUREML_WORKSPACE_ID"])
    assert from_env.mode == "local" and from_env.min_rows == 500 and from_env.drift_column_thresholds == {}
    # v2 first: the batch endpoint is the default pipeline kind, and it needs the workspace id
    assert from_env.pipeline_kind == "batch-endpoint"
    with pytest.raises(SettingsError, match="AZUREML_WORKSPACE_ID"):
        Settings.from_env({k: v for k, v in minimal.items() if k != "AZUREML_WORKSPACE_ID"})


def test_empty_numbers_take_the_default_and_empty_text_stays_empty():
    settings = Settings.from_env({**VALID, "MIN_ROWS": "", "DRIFT_THRESHOLD": "", "INCOMING_CONTAINER": "",
                                  "DRIFT_CRITICAL_COLUMNS": "", "DRIFT_COLUMN_THRESHOLDS": ""})
    assert settings.min_rows == 500 and settings.drift_threshold == 0.1
    assert settings.incoming_container == ""
    assert settings.drift_critical_columns == () and settings.drift_column_thresholds == {}


@pytest.mark.parametrize("f", [f for f in declared_fields() if f.type in ("int", "float")],
                         ids=lambda f: f.metadata["env"])
def test_a_malformed_number_names_its_setting(f):
    name = f.metadata["env"]
    kind = "an integer" if f.type == "int" else "a number"
    with pytest.raises(SettingsError) as error:
        Settings.from_env({**VALID, name: "12abc"})
    assert str(error.value) == f"setting {name} must be {kind}, got '12abc'"


def test_a_malformed_threshold_names_its_entry():
    with pytest.raises(SettingsError) as error:
        Settings.from_env({**VALID, "DRIFT_COLUMN_THRESHOLDS": "age=0.2,duration=high"})
    assert str(error.value) == "setting DRIFT_COLUMN_THRESHOLDS: 'duration=high' is not column=number"


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("RETRAIN_MODE", "cloud", "setting RETRAIN_MODE must be 'local' or 'azure', got 'cloud'"),
    ("RETRAIN_MODE", "", "setting RETRAIN_MODE must be 'local' or 'azure', got ''"),
    ("PIPELINE_KIND", " V3 ", "setting PIPELINE_KIND must be 'batch-endpoint' or 'published', got 'v3'"),
])
def test_a_value_outside_its_choices_is_refused(name, raw, message):
    with pytest.raises(SettingsError) as error:
        Settings.from_env({**VALID, name: raw})
    assert str(error.value) == message


@pytest.mark.parametrize("f", [f for f in declared_fields() if f.metadata["bounds"]], ids=lambda f: f.metadata["env"])
def test_a_number_out_of_bounds_is_refused_and_the_bounds_are_accepted(f):
    name, (low, high) = f.metadata["env"], f.metadata["bounds"]
    for outside in (low - 1, high + 1):
        with pytest.raises(SettingsError) as error:
            Settings.from_env({**VALID, name: str(outside)})
        assert str(error.value) == f"setting {name} must be between {low} and {high}, got {outside}"
    for inside in (low, high):
        assert getattr(Settings.from_env({**VALID, name: str(inside)}), f.name) == inside


def test_the_bounds_are_the_documented_ones():
    bounds = {f.metadata["env"]: f.metadata["bounds"] for f in declared_fields() if f.metadata["bounds"]}
    assert bounds == {"MAX_TIME_BUDGET_S": (1, 86400), "EVALUATION_PERCENT": (0, 50), "DRIFT_PARTITIONS": (0, 64)}


@pytest.mark.parametrize(("change", "message"), [
    ({"AzureWebJobsStorage": ""}, RULES[0].message),
    ({"PIPELINE_KIND": "batch-endpoint", "AZUREML_WORKSPACE_ID": ""}, RULES[1].message),
    ({"RETRAIN_MODE": "azure", "AZURE_RESOURCE_GROUP": ""}, RULES[2].message),
    ({"PIPELINE_ENDPOINT_URL": ""}, RULES[3].message),
])
def test_each_rule_across_settings_stops_start_up_with_its_message(change, message):
    with pytest.raises(SettingsError) as error:
        Settings.from_env({**VALID, **change})
    assert str(error.value) == message


def test_the_rules_are_the_ones_start_up_always_checked():
    assert [rule.message for rule in RULES] == [
        "set AzureWebJobsStorage (a connection string) or STORAGE_ACCOUNT_URL",
        "PIPELINE_KIND=batch-endpoint (the default) needs AZUREML_WORKSPACE_ID (the workspace's ARM id); "
        "PIPELINE_KIND=published for a v1 published pipeline",
        "RETRAIN_MODE=azure needs AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and AZUREML_WORKSPACE_NAME "
        "(the workspace that hosts the online endpoint)",
        "set PIPELINE_ENDPOINT_URL to the batch endpoint's invocation URL (v2) or the published pipeline's "
        "PipelineSubmit URL (PIPELINE_KIND=published)",
    ]
    assert Settings.from_env({"STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net/",
                              "PIPELINE_KIND": "published",
                              "PIPELINE_ENDPOINT_URL": "http://x/submit"}).storage_connection == ""


def test_a_setting_declared_twice_fails_at_import(monkeypatch):
    monkeypatch.setattr(settings_module, "SECRETS",
                        (*SECRETS, settings_module.AppSetting("MIN_ROWS", "a secret named like a setting")))
    with pytest.raises(TypeError, match=r"declared twice: \['MIN_ROWS'\]"):
        settings_module._check_declaration()


def test_a_mapping_setting_cannot_share_a_default():
    with pytest.raises(TypeError, match="must be empty"):
        settings_module.setting("X_THRESHOLDS", {"a": 1.0}, "shared mutable default")


def test_fields_built_with_the_same_default_do_not_share_a_mapping():
    one, two = Settings(), Settings()
    assert one.drift_column_thresholds == {} and one.drift_column_thresholds is not two.drift_column_thresholds
