from __future__ import annotations

import pytest

from shared.domain.run_events import (
    EventError,
    EventVerdict,
    confirmation_problem,
    normalized_resource_id,
    parse_run_event,
    status_outcome,
    topic_problem,
)


def test_run_completed_is_matched_case_insensitively():
    event = parse_run_event(event_id="1", event_type="microsoft.machineLearningServices.RUNCOMPLETED",
                            subject="experiments/e/runs/r1", data={"runId": "r1", "experimentName": "x"})
    assert event.outcome == "completed" and event.run_id == "r1"


def test_status_changed_failed_and_running():
    failed = parse_run_event(event_id="2", event_type="Microsoft.MachineLearningServices.RunStatusChanged",
                             subject="", data={"runId": "r2", "runStatus": "Failed"})
    assert failed.outcome == "failed"
    running = parse_run_event(event_id="3", event_type="Microsoft.MachineLearningServices.RunStatusChanged",
                              subject="", data={"runId": "r3", "runStatus": "Running"})
    assert running.outcome == "ignore"


def test_run_id_from_subject_and_errors():
    event = parse_run_event(event_id="4", event_type="Microsoft.MachineLearningServices.RunCompleted",
                            subject="experiments/abc/runs/AutoML_1", data={})
    assert event.run_id == "AutoML_1"
    with pytest.raises(EventError, match="not an Azure ML run event"):
        parse_run_event(event_id="5", event_type="Microsoft.Storage.BlobCreated", subject="", data={})
    with pytest.raises(EventError, match="no runId"):
        parse_run_event(event_id="6", event_type="Microsoft.MachineLearningServices.RunCompleted", subject="x",
                        data={})


WORKSPACE = "/subscriptions/0000/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws1"


@pytest.mark.parametrize("status, outcome", [
    ("Completed", "completed"), ("COMPLETED", "completed"), ("completed", "completed"),
    ("Failed", "failed"), ("failed", "failed"), ("Canceled", "failed"), ("CANCELED", "failed"),
    ("Running", "ignore"), ("Finalizing", "ignore"), ("", "ignore"), ("Unknown", "ignore")])
def test_terminal_statuses_compare_case_insensitively(status, outcome):
    assert status_outcome(status) == outcome
    event = parse_run_event(event_id="7", event_type="Microsoft.MachineLearningServices.RunStatusChanged",
                            subject="", data={"runId": "r7", "runStatus": status})
    assert event.outcome == outcome


def test_the_topic_must_be_the_workspace_arm_id_in_any_case():
    assert topic_problem(WORKSPACE, WORKSPACE) is None
    assert topic_problem(WORKSPACE.lower(), WORKSPACE) is None
    assert topic_problem(WORKSPACE.upper() + "/", " " + WORKSPACE) is None
    other = WORKSPACE.replace("ws1", "ws2")
    assert "is not the workspace" in topic_problem(other, WORKSPACE)
    assert "(none)" in topic_problem(None, WORKSPACE) and "(none)" in topic_problem("", WORKSPACE)
    assert "is not the workspace" in topic_problem(WORKSPACE + "/jobs/x", WORKSPACE)  # a prefix is not enough
    assert "AZUREML_WORKSPACE_ID is not set" in topic_problem(WORKSPACE, "")
    shown = topic_problem("/x\n\x1b[31mred", WORKSPACE)
    assert "\n" not in shown and "\x1b" not in shown  # caller text is escaped before it reaches a log or record


@pytest.mark.parametrize("claimed, actual, confirmed", [
    ("Completed", "Completed", True), ("failed", "Failed", True), ("Canceled", "Failed", True),
    ("Failed", "Canceled", True), ("Failed", "Running", False), ("Completed", "Running", False),
    ("Failed", "Completed", False), ("Completed", "Failed", False), ("Failed", "NotStarted", False)])
def test_a_claimed_terminal_status_needs_the_pipeline_to_agree(claimed, actual, confirmed):
    problem = confirmation_problem(claimed, actual)
    assert (problem is None) is confirmed
    if not confirmed:
        assert repr(claimed) in problem and repr(actual) in problem


def test_verdicts_are_string_outcomes():
    assert {v.value for v in EventVerdict} == {"foreign_topic", "rejected_event", "unconfirmed"}
    assert normalized_resource_id("/Subscriptions/A/") == "subscriptions/a"
