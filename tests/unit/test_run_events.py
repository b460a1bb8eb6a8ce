from __future__ import annotations

import pytest

from shared.domain.run_events import EventError, parse_run_event


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
