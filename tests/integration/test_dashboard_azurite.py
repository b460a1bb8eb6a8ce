"""The dashboard's data (shared.services.dashboard) read from real Azurite stores holding what the services write:
upload, completion, promote and rollback records, a drift check with its stored report, the outbox's states, the
replay's figures in the reports container."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from shared.adapters import storage
from shared.adapters.outbox import Outbox
from shared.adapters.reports import ContainerReports
from shared.bootstrap import build_stores, report_writer
from shared.domain.outcomes import Outcome
from shared.domain.records import AuditRecord
from shared.domain.retrain_request import RetrainRequest
from shared.services.dashboard import REPLAY_BLOB, DashboardSources, Kind, ModelState, drift_report, snapshot
from shared.settings import Settings


@pytest.fixture
def env(azurite):
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(storage_connection=azurite, audit_table=f"audit{suffix}", runs_table=f"runs{suffix}",
                        models_table=f"models{suffix}", datasets_table=f"datasets{suffix}",
                        datasets_container=f"datasets{suffix}")
    blobs = storage.blob_service(settings)
    container = blobs.get_container_client(f"reports{suffix}")
    container.create_container()
    stores = build_stores(settings)
    outbox = Outbox(storage.ensure_table(storage.table_service(settings), f"outbox{suffix}"))
    sources = DashboardSources(audit=stores.audit, runs=stores.runs, models=stores.models, outbox=outbox,
                               reports=ContainerReports(container))
    return {"sources": sources, "container": container, "write_report": report_writer(container)}


def record(audit, rid: str, at: float, trigger: str, function: str, outcome: str, **fields) -> AuditRecord:
    data = fields.pop("data", {})
    r = AuditRecord(id=rid, trigger=trigger, function=function, started_at=at, outcome=outcome, data=data, **fields)
    r.finished_at = at + 1
    audit.save(r)
    return r


def decision(outcome: str, challenger_auc: float, champion_auc: float | None, reason: str) -> dict:
    return {"decision": {"outcome": outcome, "reason": reason, "challenger": {"auc": challenger_auc, "rows": 300},
                         "champion": None if champion_auc is None else {"auc": champion_auc, "rows": 300}}}


def register(models, n: int, auc: float):
    return models.register(run_id=f"run-{n}", dataset_version=n, model_dir=f"/m/{n}",
                           metrics={"auc": auc, "accuracy": 0.9, "f1": float("nan")})


def seed_history(env) -> float:
    """v1 deployed, v2 kept out by the gate, v3 promoted by hand and rolled back; one drift check with a report."""
    s = env["sources"]
    t = time.time() - 1000
    for n, auc in ((1, 0.93), (2, 0.91), (3, 0.94)):
        register(s.models, n, auc)
    record(s.audit, "blob-1", t, "blob", "blob_upload", Outcome.SUBMITTED, dataset_version=1, run_id="run-1",
           detail="dataset v1 (32950 rows) submitted (upload)", source="incoming/a.csv")
    record(s.audit, "evt-1", t + 10, "eventgrid", "run_completed", Outcome.DEPLOYED, run_id="run-1",
           model_version=1, dataset_version=1, data=decision("promoted", 0.93, None, "first model"))
    s.models.set_live(1)
    record(s.audit, "evt-2", t + 20, "eventgrid", "run_completed", Outcome.KEPT_CHAMPION, run_id="run-2",
           model_version=2, dataset_version=2, data=decision("kept_champion", 0.91, 0.93, "worse by 0.02"))
    report = env["write_report"]("2026/12/07/drift-9.html", "<html><body><h1>drift report</h1></body></html>")
    record(s.audit, "drift-9", t + 30, "timer", "drift_timer", Outcome.NO_DRIFT, model_version=1,
           data={"drift": {"drifted": False, "drift_share": 0.05, "drifted_columns": ["age"],
                           "scores": {"age": 0.2, "duration": 0.05}}, "report": report})
    record(s.audit, "cli-p", t + 40, "cli", "promote", Outcome.PROMOTED, model_version=3, data={"replaced": 1})
    s.models.set_live(3)
    record(s.audit, "cli-r", t + 50, "cli", "rollback", Outcome.ROLLED_BACK, model_version=1, data={"replaced": 3})
    s.models.set_live(1)
    return t


def test_the_snapshot_shows_what_fired_what_was_decided_and_each_model_state(env):
    seed_history(env)
    data = snapshot(env["sources"])
    json.dumps(data, allow_nan=False)  # what the route serves: strict JSON (the NaN f1 is not shown)
    assert data["live_version"] == 1
    assert [(e["id"], e["kind"]) for e in data["timeline"]] == [
        ("cli-r", Kind.ROLLBACK), ("cli-p", Kind.PROMOTE), ("drift-9", Kind.DRIFT), ("evt-2", Kind.COMPLETION),
        ("evt-1", Kind.COMPLETION), ("blob-1", Kind.UPLOAD)]
    assert data["timeline"][3]["reason"] == "worse by 0.02"  # the decision's reason, not only the detail
    assert data["timeline"][2]["has_report"] is True
    states = {m["version"]: m["state"] for m in data["models"]}
    assert states == {1: ModelState.LIVE, 2: ModelState.KEPT_OUT, 3: ModelState.ROLLED_BACK}
    v2 = data["models"][1]
    assert v2["comparison"]["challenger"]["auc"] == 0.91 and v2["comparison"]["champion"]["auc"] == 0.93
    assert v2["held_out"] == {"auc": 0.91, "accuracy": 0.9, "rows": None}
    assert data["models"][0]["comparison"]["champion"] == {"auc": None, "accuracy": None, "rows": None}
    assert data["drift"]["columns"] == ["age", "duration"]
    assert [(c["audit_id"], c["scores"]) for c in data["drift"]["checks"]] == [
        ("drift-9", {"age": 0.2, "duration": 0.05})]
    assert data["outbox"] == [] and data["replay"] is None


def test_a_model_deployed_again_after_its_rollback_is_live_not_rolled_back(env):
    s = env["sources"]
    seed_history(env)
    record(s.audit, "cli-p2", time.time(), "cli", "promote", Outcome.PROMOTED, model_version=3)
    s.models.set_live(3)
    states = {m["version"]: m["state"] for m in snapshot(s)["models"]}
    assert states == {1: ModelState.RETIRED, 2: ModelState.KEPT_OUT, 3: ModelState.LIVE}


def test_the_outbox_shows_queued_then_in_flight_then_retrying_with_the_next_attempt(env):
    outbox = env["sources"].outbox
    now = time.time()
    outbox.enqueue(RetrainRequest(id="http-q", trigger="http", reason="webhook", dataset_version=4,
                                  requested_at=now, not_before=now + 30, deadline=now + 3600))
    queued = snapshot(env["sources"], now=now)["outbox"]
    assert [(r["id"], r["state"], r["next_attempt_at"]) for r in queued] == [("http-q", "queued", now + 30)]
    assert outbox.claim(now + 31).id == "http-q"
    assert [r["state"] for r in snapshot(env["sources"])["outbox"]] == ["in_flight"]
    outbox.release("http-q", error="503 from the pipeline endpoint", next_attempt_at=now + 90)
    (retrying,) = snapshot(env["sources"])["outbox"]
    assert (retrying["state"], retrying["attempts"], retrying["next_attempt_at"]) == ("retrying", 1, now + 90)
    assert retrying["last_error"] == "503 from the pipeline endpoint"


def test_the_snapshot_reads_a_bounded_window_of_the_newest_audit_records(env):
    audit = env["sources"].audit
    t = time.time()
    for i in range(8):
        record(audit, f"blob-{i}", t + i, "blob", "blob_upload", Outcome.SUBMITTED)
    data = snapshot(env["sources"], audit_window=5, timeline_rows=3)
    assert [e["id"] for e in data["timeline"]] == ["blob-7", "blob-6", "blob-5"]
    assert data["audit_window"] == {"read": 5, "limit": 5}


def test_the_replay_figures_stored_in_the_reports_container_are_shown(env):
    periods = [{"period": k, "rows": 3295, "live_version": k - 3, "ours_auc": 0.8 + k / 100, "static_auc": 0.8,
                "lightgbm_auc": 0.85, "drift_report": "x.html"} for k in (5, 6, 7)]
    env["container"].upload_blob(REPLAY_BLOB, json.dumps({"summary": {"periods": 3, "ours_mean_auc": 0.86},
                                                          "periods": periods}).encode())
    replay = snapshot(env["sources"])["replay"]
    assert [p["period"] for p in replay["periods"]] == [5, 6, 7]
    assert replay["periods"][1]["ours_auc"] == pytest.approx(0.86) and "drift_report" not in replay["periods"][1]
    assert replay["summary"] == {"periods": 3, "ours_mean_auc": 0.86}


def test_replay_summary_values_that_are_not_text_or_finite_numbers_are_left_out(env):
    summary = {"periods": 2, "order": "calendar", "ours_mean_auc": float("nan"), "seconds": float("inf"),
               "met": True, "out": None}
    env["container"].upload_blob(REPLAY_BLOB, json.dumps({"summary": summary, "periods": []}).encode())
    replay = snapshot(env["sources"])["replay"]
    assert replay["summary"] == {"periods": 2, "order": "calendar"}
    json.dumps(replay, allow_nan=False)


def test_malformed_replay_figures_are_left_out_not_a_failed_page(env):
    env["container"].upload_blob(REPLAY_BLOB, b"{not json", overwrite=True)
    assert snapshot(env["sources"])["replay"] is None


def test_a_drift_report_is_served_from_its_own_audit_record_and_nothing_else(env):
    seed_history(env)
    s, name = env["sources"], env["container"].container_name
    answer = drift_report("drift-9", audit=s.audit, reports=s.reports, container=name)
    assert answer.status == 200 and b"drift report" in answer.body and answer.mimetype == "text/html"
    assert "sandbox" in answer.headers["Content-Security-Policy"]
    for other in ("evt-1", "nope", "../drift-9", "drift-9/../../x", ""):
        refused = drift_report(other, audit=s.audit, reports=s.reports, container=name)
        assert refused.status == 404, other
    env["container"].delete_blob("2026/12/07/drift-9.html")
    gone = drift_report("drift-9", audit=s.audit, reports=s.reports, container=name)
    assert gone.status == 404 and "gone" in gone.body["detail"]
