"""The stored and answered spellings of outcomes and statuses are contracts: audit rows, the runs and outbox tables,
GET /api/runs and the CLI read them. These tests pin every spelling, so renaming a member's value fails here."""

from __future__ import annotations

import json

from shared.adapters.tables import from_entity, to_entity
from shared.domain.outcomes import ENDED, IN_FLIGHT, JobStatus, Outcome, PipelineStatus, RequestStatus, RunStatus
from shared.domain.records import AuditRecord, RunRecord
from shared.domain.run_events import EventVerdict


def test_every_stored_spelling_is_pinned():
    assert {o.value for o in Outcome} == {
        "in_progress", "queued", "profiling", "concluding", "submitted", "duplicate", "rejected", "failed", "skipped",
        "no_drift", "superseded", "ignored", "foreign_topic", "rejected_event", "unconfirmed", "kept_champion",
        "promoted", "deployed", "rolled_back", "reconciled", "interrupted"}
    assert {s.value for s in RunStatus} == {"Submitted", "Handling", "Deployed", "KeptChampion", "RolledBack", "Failed",
                                            "Queued", "Superseded", "Running"}
    assert {s.value for s in RequestStatus} == {"pending", "submitting", "submitted", "failed", "superseded",
                                                "unconfirmed"}
    assert {s.value for s in PipelineStatus} == {"NotStarted", "Queued", "Running", "Completed", "Failed", "Canceled",
                                                 "Unknown"}
    assert {s.value for s in JobStatus} == {"running", "completed", "failed"}
    assert ENDED == ("Completed", "Failed", "Canceled") and IN_FLIGHT == ("Submitted", "Handling")


def test_one_idea_keeps_its_two_contract_spellings():
    assert Outcome.KEPT_CHAMPION == "kept_champion" and RunStatus.KEPT_CHAMPION == "KeptChampion"
    assert Outcome.DEPLOYED == "deployed" and RunStatus.DEPLOYED == "Deployed"
    assert {v.value for v in EventVerdict} <= {o.value for o in Outcome}


def test_open_outcomes_are_the_ones_the_api_shows_as_running():
    assert {o for o in Outcome if o.is_open} == {"in_progress", "profiling", "concluding"}


def test_members_are_written_as_their_plain_strings_and_old_rows_read_the_same():
    record = AuditRecord(id="a1", trigger="http", function="f", started_at=1.0)
    record.finish(Outcome.KEPT_CHAMPION, "kept")
    record.stage(Outcome.PROFILING.value)
    assert str(to_entity(record, "audit", "a1")["outcome"]) == "kept_champion"  # the table SDK writes str(member)
    assert json.loads(json.dumps(record.to_dict()))["outcome"] == "kept_champion"
    run = RunRecord(run_id="r", trigger_id="t", trigger="blob", reason="upload", dataset_version=1, experiment="e",
                    submitted_at=1.0)
    assert json.loads(json.dumps({"status": run.status}))["status"] == "Submitted" and f"{run.status}" == "Submitted"
    old = from_entity(RunRecord, {**to_entity(run, "run", "r"), "status": "KeptChampion"})  # a row as written before
    assert old.status == RunStatus.KEPT_CHAMPION and old.status not in IN_FLIGHT
