"""`retrain history`: completions, promotions and rollbacks with both models' figures; noise left out."""

from __future__ import annotations

from shared.domain.records import AuditRecord
from tools.cli.records import history_rows


def record(function: str, outcome: str, **extra) -> AuditRecord:
    r = AuditRecord(id=f"{function}-{outcome}", trigger="eventgrid", function=function, started_at=1.0,
                    finished_at=3.5, outcome=outcome, **extra)
    return r


def test_history_keeps_decisions_and_drops_noise():
    kept = record("run_completed", "kept_champion", run_id="r2", model_version=2, detail="worse")
    kept.data["decision"] = {"challenger": {"auc": 0.90}, "champion": {"auc": 0.93, "version": 1}}
    deployed = record("run_completed", "deployed", run_id="r1", model_version=1)
    deployed.data["deployment"] = {"slot": "green"}
    rows = history_rows([
        record("blob_upload", "submitted"), deployed, kept,
        record("run_completed", "duplicate", run_id="r1"), record("run_completed", "ignored"),
        record("run_completed", "rejected_event", run_id="r1"), record("run_completed", "foreign_topic"),
        record("run_completed", "unconfirmed", run_id="r2"),  # events not believed changed nothing
        record("reconcile_timer", "reconciled"),  # the pass itself, not a run
        record("reconcile_timer", "failed", run_id="r3"), record("rollback", "rolled_back", model_version=1),
    ])
    assert [(r["function"], r["outcome"]) for r in rows] == [
        ("run_completed", "deployed"), ("run_completed", "kept_champion"), ("reconcile_timer", "failed"),
        ("rollback", "rolled_back")]
    assert rows[1]["challenger"] == {"auc": 0.90} and rows[1]["champion"]["auc"] == 0.93
    assert rows[0]["deployment"] == {"slot": "green"} and rows[0]["seconds"] == 2.5
