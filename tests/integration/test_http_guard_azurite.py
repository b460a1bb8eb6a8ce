"""The signed routes' admission on Azurite: the per-caller refusal aggregate and its throttle (RejectionLog), the
drift check's single-flight lease (SingleFlight), POST /api/drift-check's service, and the audit store's paging."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from shared.adapters import storage
from shared.adapters.outbox import Outbox
from shared.adapters.record_stores import AuditStore
from shared.adapters.webhook_state import RateLimiter, RejectionLog, ReplayGuard, SingleFlight
from shared.bootstrap import build_stores
from shared.domain.records import AuditRecord, new_id
from shared.domain.webhook_signature import sign
from shared.services.drift_on_demand import DriftHttpGuard, DriftOnDemand, drift_check_http, timer_check
from shared.services.http_guard import MAX_BODY, WebhookRequest, admit
from shared.services.http_retrain import WebhookGuard, WebhookIntake, retrain_http
from shared.services.retrain import PipelineTarget, RetrainDispatch
from shared.services.run_queries import get_run
from tests.isolation import isolated_settings

SECRET = "s3cret-" + uuid.uuid4().hex
NOW = 1_800_000_000.0  # the start of a minute (divisible by 60)
TARGET = PipelineTarget(experiment="exp", datastore="workspaceblobstore", data_input="training_data", budget_s=5)


@pytest.fixture
def table(azurite):
    settings = isolated_settings(azurite)
    return storage.ensure_table(storage.table_service(settings), settings.webhook_table)


@pytest.fixture
def stores(azurite):
    return build_stores(isolated_settings(azurite))


@pytest.fixture
def outbox(azurite):
    settings = isolated_settings(azurite)
    return Outbox(storage.ensure_table(storage.table_service(settings), settings.outbox_table))


def unsigned(client="10.0.0.1", body=b"{}", **headers) -> WebhookRequest:
    return WebhookRequest(body, {"Content-Type": "application/json", "X-Forwarded-For": client, **headers})


def signed(body=b"", at=NOW, client="10.0.0.1", secret=SECRET) -> WebhookRequest:
    return WebhookRequest(body, {"X-Forwarded-For": client, **sign(secret, body, int(at))})


# ------------------------------------------------------------------------------ the aggregate and its throttle


def test_refusals_are_one_row_per_caller_and_minute_with_the_last_reasons(table):
    log = RejectionLog(table, limit=3)
    counts = [log.record("10.0.0.1", route="/api/retrain", status=401, reason=f"bad {i}", now=NOW + i)
              for i in range(7)]
    assert counts == [1, 2, 3, 4, 5, 6, 7]
    log.record("10.0.0.2", route="/api/drift-check", status=413, reason="too big", now=NOW + 8)
    log.record("10.0.0.1", route="/api/retrain", status=401, reason="next minute", now=NOW + 61)
    rows = log.list(limit=10)
    assert [(r.caller, r.minute, r.count) for r in rows] == [
        ("10.0.0.1", NOW + 60, 1), ("10.0.0.2", NOW, 1), ("10.0.0.1", NOW, 7)] or \
        [(r.caller, r.minute, r.count) for r in rows] == [
        ("10.0.0.1", NOW + 60, 1), ("10.0.0.1", NOW, 7), ("10.0.0.2", NOW, 1)]  # same minute: either order
    first = next(r for r in rows if r.caller == "10.0.0.1" and r.minute == NOW)
    assert [n["reason"] for n in first.reasons] == [f"bad {i}" for i in range(2, 7)]  # the last KEEP_REASONS
    assert first.first_at == NOW and first.last_at == NOW + 6
    assert len(log.list(limit=1)) == 1  # newest first, no more than asked


def test_a_caller_over_the_limit_is_throttled_until_the_minute_ends_and_others_are_not(table):
    log = RejectionLog(table, limit=3)
    for i in range(3):
        log.record("10.0.0.1", route="/api/retrain", status=401, reason="x", now=NOW + i)
    assert log.throttled("10.0.0.1", NOW + 10).allowed  # 3 refusals: not more than the limit yet
    log.record("10.0.0.1", route="/api/retrain", status=401, reason="x", now=NOW + 11)
    decision = log.throttled("10.0.0.1", NOW + 20)
    assert not decision.allowed and decision.retry_after_s == 40
    assert log.throttled("10.0.0.2", NOW + 20).allowed
    assert log.throttled("10.0.0.1", NOW + 60).allowed  # a new minute
    assert RejectionLog(table, limit=0).throttled("10.0.0.1", NOW + 20).allowed  # 0: never throttles


def test_concurrent_refusals_are_all_counted(table):
    log = RejectionLog(table, limit=100)
    threads = [threading.Thread(target=log.record, args=("10.9.9.9",),
                                kwargs={"route": "/api/retrain", "status": 401, "reason": "x", "now": NOW + 1})
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert next(r for r in log.list() if r.caller == "10.9.9.9").count == 8


def test_old_caller_minutes_are_purged(table):
    log = RejectionLog(table, limit=3, retention_s=3600, purge_every_s=None)
    log.record("10.0.0.1", route="/api/retrain", status=401, reason="old", now=NOW)
    log.record("10.0.0.1", route="/api/retrain", status=401, reason="new", now=NOW + 7200)
    assert log.purge(NOW + 7200) == 1
    assert [r.minute for r in log.list()] == [NOW + 7200]


# ------------------------------------------------------------------------------ admit


def guard_args(table, limit=3):
    return dict(secrets=(SECRET,), replay=ReplayGuard(table), rejections=RejectionLog(table, limit=limit),
                tolerance_s=300)


def test_unsigned_requests_get_401_then_429_with_nothing_written_once_throttled(table):
    args = guard_args(table)
    answers = [admit(unsigned(), instance="/api/retrain", now=NOW + i, **args) for i in range(6)]
    assert [a.status for a in answers] == [401] * 4 + [429] * 2
    assert answers[-1].headers["Retry-After"] == "55" and answers[-1].body["instance"] == "/api/retrain"
    assert "more than 3" in answers[-1].body["detail"]
    (row,) = args["rejections"].list()
    assert row.count == 4  # the throttled ones were not written


def test_every_pre_authentication_refusal_is_counted(table):
    args = guard_args(table, limit=100)
    cases = [
        (WebhookRequest(b"", {"X-Forwarded-For": "1.1.1.1"}, "GET"), 405),
        (WebhookRequest(b"", {"X-Forwarded-For": "1.1.1.1", "Content-Length": str(MAX_BODY + 1)}), 413),
        (WebhookRequest(b"{}", {"X-Forwarded-For": "1.1.1.1", "Content-Type": "text/plain"}), 415),
        (WebhookRequest(b"{}", {"Content-Type": "application/json", **signed(b"{}", secret="wrong").headers}), 401),
    ]
    for request, status in cases:
        answer = admit(request, instance="/api/retrain", now=NOW, **args)
        assert answer.status == status, answer
    statuses = [n["status"] for r in args["rejections"].list() for n in r.reasons]
    assert sorted(statuses) == [401, 405, 413, 415]


def test_a_signed_request_is_admitted_once_and_its_replay_is_counted(table):
    args = guard_args(table)
    request = signed(b"{}")
    request = WebhookRequest(request.body, {**request.headers, "Content-Type": "application/json"})
    assert admit(request, instance="/api/retrain", now=NOW + 1, **args) is None
    again = admit(request, instance="/api/retrain", now=NOW + 2, **args)
    assert again.status == 401 and "replay" in again.body["detail"]
    assert args["rejections"].list()[0].count == 1


def test_retrain_http_audits_authenticated_refusals_only(table, stores, outbox):
    guard = WebhookGuard(secrets=(SECRET,), replay=ReplayGuard(table), rate=RateLimiter(table, 1, 60),
                         idempotency=None, rejections=RejectionLog(table, limit=3))
    # no pipeline: every request here is refused before anything is submitted
    intake = WebhookIntake(guard, RetrainDispatch(outbox=outbox, runs=stores.runs, pipeline=None,
                                                  datasets=stores.datasets, audit=stores.audit, models=stores.models,
                                                  target=TARGET))
    answer, record = retrain_http(unsigned(), intake, now=NOW)
    assert answer.status == 401 and record is None and stores.audit.list() == []
    headers = {"Content-Type": "application/json", "X-Forwarded-For": "10.0.0.1"}
    for i in range(2):
        raw = json.dumps({"dataset": "v99", "reason": str(i)}).encode()
        answer, record = retrain_http(WebhookRequest(raw, {**headers, **sign(SECRET, raw, int(NOW) + i)}), intake,
                                      now=NOW + i)
        assert answer.status == (404, 429)[i], answer
        assert stores.audit.get(record.id).data["status"] == answer.status
    assert len(stores.audit.list()) == 2


# ------------------------------------------------------------------------------ single flight


def test_one_holder_at_a_time_and_an_expired_lease_is_taken_over(table):
    flight = SingleFlight(table, "drift-check", lease_s=60)
    first = flight.acquire("a", NOW, location="/api/runs/a")
    assert first.acquired
    second = flight.acquire("b", NOW + 10)
    assert not second.acquired and second.holder == "a" and second.location == "/api/runs/a"
    assert not flight.release("b")  # not the holder
    assert flight.acquire("c", NOW + 61).acquired  # a's lease expired
    assert not flight.release("a")  # a lost it: nothing to release
    assert flight.release("c") and flight.acquire("d", NOW + 62).acquired


def test_concurrent_acquires_have_exactly_one_winner(table):
    flight = SingleFlight(table, "race", lease_s=60)
    results: list = []
    threads = [threading.Thread(target=lambda h=h: results.append(flight.acquire(h, NOW))) for h in "abcdefgh"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.acquired for r in results) == 1
    winner = next(r.holder for r in results if r.acquired)
    assert {r.holder for r in results if not r.acquired} <= {winner}


# ------------------------------------------------------------------------------ POST /api/drift-check


def drift_guard(table, rate_limit=5):
    return DriftHttpGuard(secrets=(SECRET,), replay=ReplayGuard(table),
                          rate=RateLimiter(table, rate_limit, 3600, scope="drift"),
                          rejections=RejectionLog(table, limit=3))


def finished_check(audit):
    def run(record_id):
        record = AuditRecord(id=record_id, trigger="http", function="drift_http", started_at=NOW)
        record.finish("skipped", "skipped: no live model yet")
        audit.save(record)
        return record
    return run


def test_a_signed_empty_body_runs_the_check_and_answers_the_existing_keys(table, stores):
    on_demand = DriftOnDemand(drift_guard(table), SingleFlight(table, "d"), stores.audit)
    answer, record = drift_check_http(signed(b""), on_demand, finished_check(stores.audit), now=NOW)
    assert answer.status == 200, answer
    assert set(answer.body) == {"audit_id", "outcome", "detail", "run_id", "drift", "report", "job"}
    assert answer.body["audit_id"] == record.id and answer.body["outcome"] == "skipped"
    assert SingleFlight(table, "d").acquire("next", NOW + 1).acquired  # released after the check


@pytest.mark.parametrize("request_, detail", [
    (WebhookRequest(b"", {"X-Forwarded-For": "10.0.0.1"}), "missing X-Retrain-Signature"),
    (signed(b"", secret="not-the-secret"), "does not match"),
    (signed(b"", at=NOW - 301), "old"),
])
def test_unsigned_badly_signed_or_stale_checks_are_401_and_not_audited(table, stores, request_, detail):
    ran = []
    on_demand = DriftOnDemand(drift_guard(table), SingleFlight(table, "d"), stores.audit)
    answer, record = drift_check_http(request_, on_demand, ran.append, now=NOW)
    assert answer.status == 401 and detail in answer.body["detail"] and answer.body["instance"] == "/api/drift-check"
    assert record is None and ran == [] and stores.audit.list() == []


def test_a_replayed_check_is_401(table, stores):
    guard, request = drift_guard(table), signed(b"")
    args = (DriftOnDemand(guard, SingleFlight(table, "d"), stores.audit), finished_check(stores.audit))
    assert drift_check_http(request, *args, now=NOW)[0].status == 200
    again, _ = drift_check_http(request, *args, now=NOW + 1)
    assert again.status == 401 and "replay" in again.body["detail"]


def test_a_check_while_another_runs_is_409_with_its_location_and_audited(table, stores):
    flight = SingleFlight(table, "d", lease_s=600)
    running = new_id("http-")
    assert flight.acquire(running, NOW - 5, location=f"/api/runs/{running}").acquired
    ran = []
    answer, record = drift_check_http(signed(b""), DriftOnDemand(drift_guard(table), flight, stores.audit),
                                      ran.append, now=NOW)
    assert answer.status == 409 and answer.headers["Location"] == f"/api/runs/{running}" and ran == []
    assert running in answer.body["detail"]
    stored = stores.audit.get(record.id)
    assert stored.outcome == "rejected" and stored.data["status"] == 409


def test_the_route_has_its_own_rate_limit(table, stores):
    guard = drift_guard(table, rate_limit=2)
    args = (DriftOnDemand(guard, SingleFlight(table, "d"), stores.audit), finished_check(stores.audit))
    answers = [drift_check_http(signed(b"", at=NOW + i), *args, now=NOW + i)[0] for i in range(3)]
    assert [a.status for a in answers] == [200, 200, 429] and int(answers[-1].headers["Retry-After"]) >= 1
    webhook_rate = RateLimiter(table, 2, 3600)  # the webhook's counters for the same caller are untouched
    assert webhook_rate.hit("10.0.0.1", NOW + 5).allowed


@pytest.mark.parametrize("body", [b'{"window_s": 1}', b"[]", b"nope"])
def test_the_check_takes_no_parameters(table, stores, body):
    on_demand = DriftOnDemand(drift_guard(table), SingleFlight(table, "d"), stores.audit)
    answer, record = drift_check_http(signed(body), on_demand, finished_check(stores.audit), now=NOW)
    assert answer.status == 400 and "no parameters" in answer.body["detail"]
    assert stores.audit.get(record.id).outcome == "rejected"


def test_the_timer_skips_while_an_on_demand_check_holds_the_lease(table, stores):
    flight = SingleFlight(table, "d", lease_s=600)
    assert flight.acquire("http-running", NOW).acquired
    record = timer_check(DriftOnDemand(None, flight, stores.audit), lambda _id: pytest.fail("must not run"),
                         now=NOW + 1)
    assert record.outcome == "skipped" and "http-running" in record.detail
    assert stores.audit.get(record.id).trigger == "timer"
    flight.release("http-running")
    ran = timer_check(DriftOnDemand(None, flight, stores.audit), finished_check(stores.audit), now=NOW + 2)
    assert ran.outcome == "skipped" and ran.detail == "skipped: no live model yet"


def test_the_location_of_a_check_shows_its_audit_record(stores):
    record = AuditRecord(id=new_id("http-"), trigger="http", function="drift_http", started_at=NOW)
    stores.audit.save(record)
    answer = get_run(record.id, runs=stores.runs, audit=stores.audit)
    status, body = answer.status, answer.body
    assert status == 200 and body["status"] == "Running" and body["audit_id"] == record.id
    stores.audit.finish(record, "no_drift", "no drift")
    answer = get_run(record.id, runs=stores.runs, audit=stores.audit)
    status, body = answer.status, answer.body
    assert body["status"] == "no_drift" and body["detail"] == "no drift"
    assert get_run("http-nope", runs=stores.runs, audit=stores.audit).status == 404


# ------------------------------------------------------------------------------ audit paging


class CountingTable:
    """The real TableClient, counting the entities its queries hand out (what a listing reads)."""

    def __init__(self, table):
        self._table, self.read = table, 0

    def __getattr__(self, name):
        return getattr(self._table, name)

    def query_entities(self, *args, **kwargs):
        for entity in self._table.query_entities(*args, **kwargs):
            self.read += 1
            yield entity


def test_the_newest_records_are_listed_reading_about_as_many_rows(azurite):
    settings = isolated_settings(azurite)
    table = storage.ensure_table(storage.table_service(settings), settings.audit_table)
    audit = AuditStore(table)
    ids = []
    for i in range(30):
        record = AuditRecord(id=f"blob-{1_700_000_000_000 + i * 1000:013d}-{uuid.uuid4().hex[:8]}",
                             trigger="blob", function="blob_upload", started_at=1_700_000_000.0 + i)
        audit.save(record)
        ids.append(record.id)
    counting = CountingTable(table)
    newest = AuditStore(counting).list(limit=5)
    assert [r.id for r in newest] == ids[-5:]  # oldest first, as before
    assert counting.read <= 5 + 5  # at most what it returns (+ a page)
    assert [r.id for r in AuditStore(table).list()] == ids


def test_records_stored_before_the_ordered_keys_are_still_read_and_rewritten_in_place(azurite):
    settings = isolated_settings(azurite)
    table = storage.ensure_table(storage.table_service(settings), settings.audit_table)
    old = AuditRecord(id=f"timer-{1_600_000_000_000:013d}-abcdef01", trigger="timer", function="drift_timer",
                      started_at=1_600_000_000.0, outcome="profiling")
    table.upsert_entity({**{k: v for k, v in old.__dict__.items() if not isinstance(v, dict) and v is not None},
                         "PartitionKey": "audit", "RowKey": old.id})  # the layout before: RowKey = id
    audit = AuditStore(table)
    new = AuditRecord(id=new_id("http-"), trigger="http", function="drift_http", started_at=1_800_000_000.0)
    audit.save(new)
    assert [r.id for r in audit.list(limit=5)] == [old.id, new.id]
    assert audit.get(old.id).outcome == "profiling"
    claimed = audit.claim(old.id, "profiling", "concluding")
    audit.finish(claimed, "no_drift", "done")
    assert [r.outcome for r in audit.list() if r.id == old.id] == ["no_drift"]  # one row, rewritten
    assert len(list(table.query_entities("PartitionKey eq 'audit'"))) == 2


def test_runs_are_listed_newest_first_reading_about_as_many_rows(azurite):
    from shared.adapters.record_stores import RunStore
    from shared.domain.records import RunRecord
    from shared.services.run_queries import list_runs

    settings = isolated_settings(azurite)
    table = storage.ensure_table(storage.table_service(settings), settings.runs_table)
    legacy = RunRecord(run_id="old-run", trigger_id="t", trigger="blob", reason="upload", dataset_version=1,
                       experiment="e", submitted_at=1_600_000_000.0, status="Deployed")
    table.create_entity({"PartitionKey": "run", "RowKey": legacy.run_id, **{
        k: v for k, v in legacy.__dict__.items() if v is not None}})  # stored before the listing copies existed
    runs = RunStore(table)
    for i in range(20):
        runs.create(RunRecord(run_id=f"run-{i:02d}", trigger_id="t", trigger="blob", reason="upload",
                              dataset_version=i, experiment="e", submitted_at=1_700_000_000.0 + i))
    runs.claim("run-03")  # a status change reaches the copy
    counting = CountingTable(table)
    answer = list_runs(runs=RunStore(counting), limit=3)
    status, body = answer.status, answer.body
    assert status == 200 and [r["run_id"] for r in body["runs"]] == ["run-19", "run-18", "run-17"]
    assert counting.read <= 3 + 3
    assert [r.run_id for r in RunStore(table).newest(1, "handling")] == ["run-03"]
    everything = RunStore(table).newest(50)
    assert [r.run_id for r in everything] == [f"run-{i:02d}" for i in range(19, -1, -1)] + ["old-run"]
    assert RunStore(table).get("run-03").status == "Handling" and len(RunStore(table).list()) == 21
