"""Webhook state against a real Azurite: replay guard, idempotency keys and rate limits, including races."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.webhook_state import IdempotencyKeyError, IdempotencyStore, RateLimiter, ReplayGuard
from shared.domain.webhook_signature import replay_key

NOW = 1_700_000_000.0
BODY = b'{"dataset": "latest"}'


@pytest.fixture
def table(azurite):
    service = TableServiceClient.from_connection_string(azurite)
    name = f"webhook{uuid.uuid4().hex[:12]}"
    client = service.create_table(name)
    yield client
    service.delete_table(name)


def _race(n, fn):
    """Run fn(i) on n threads released together; returns the results in order."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


# --- replay guard ---------------------------------------------------------------------------------------------

def test_replay_is_detected(table):
    guard = ReplayGuard(table)
    key = replay_key(BODY, int(NOW))
    assert guard.remember(key, int(NOW), NOW) is True
    assert guard.remember(key, int(NOW), NOW + 5) is False
    assert guard.remember(key.upper(), int(NOW), NOW + 5) is False
    assert guard.remember(replay_key(BODY, int(NOW) + 1), int(NOW) + 1, NOW + 5) is True


def test_replay_guard_under_concurrency_lets_one_through(table):
    guard = ReplayGuard(table)
    key = replay_key(BODY, int(NOW))
    assert sorted(_race(8, lambda i: guard.remember(key, int(NOW), NOW))) == [False] * 7 + [True]


def test_replay_guard_purges_only_expired_entries(table):
    guard = ReplayGuard(table, purge_every_s=None)
    old, recent = replay_key(b"old", int(NOW) - 700), replay_key(b"recent", int(NOW) - 100)
    assert guard.remember(old, int(NOW) - 700, NOW - 700)
    assert guard.remember(recent, int(NOW) - 100, NOW - 100)
    assert guard.purge(NOW) == 1
    assert guard.remember(recent, int(NOW) - 100, NOW) is False  # still inside the window: still a replay
    assert guard.remember(old, int(NOW) - 700, NOW) is True  # verify() would have rejected it anyway


def test_replay_guard_purges_opportunistically(table):
    guard = ReplayGuard(table, purge_every_s=600)
    old = replay_key(b"old", int(NOW) - 2000)
    assert guard.remember(old, int(NOW) - 2000, NOW - 2000)  # first call purges (nothing) and schedules the next
    assert guard.remember(replay_key(BODY, int(NOW)), int(NOW), NOW)  # due again: removes `old`
    rows = list(table.query_entities("PartitionKey eq 'replay'"))
    assert [r["RowKey"] for r in rows] == [replay_key(BODY, int(NOW))]


def test_replay_guard_rejects_non_hex_keys(table):
    with pytest.raises(ValueError):
        ReplayGuard(table).remember("sha256=abc/def", int(NOW), NOW)


# --- idempotency ----------------------------------------------------------------------------------------------

KEY = "ci/run#42?attempt=1 \\ ünïcödé"  # characters a RowKey forbids, on purpose


def test_first_request_reserves_then_replays_the_stored_response(table):
    store = IdempotencyStore(table)
    first = store.begin(KEY, "h1", NOW)
    assert first.state == "new" and first.owner
    assert store.begin(KEY, "h1", NOW + 1).state == "in_progress"
    body = {"status": "submitted", "run_id": "run-1"}
    assert store.complete(KEY, 202, body, "/api/retrain/run-1", owner=first.owner, now=NOW + 2)
    again = store.begin(KEY, "h1", NOW + 3)
    assert (again.state, again.status, again.body, again.location) == ("replay", 202, body, "/api/retrain/run-1")
    assert again.owner is None


def test_replay_without_location(table):
    store = IdempotencyStore(table)
    store.begin(KEY, "h1", NOW)
    assert store.complete(KEY, 202, {"ok": True})
    assert store.begin(KEY, "h1", NOW + 1).location is None


def test_same_key_different_request_is_a_conflict(table):
    store = IdempotencyStore(table)
    first = store.begin(KEY, "h1", NOW)
    assert store.begin(KEY, "h2", NOW + 1).state == "conflict"  # while in progress
    store.complete(KEY, 202, {"run_id": "r"}, owner=first.owner)
    assert store.begin(KEY, "h2", NOW + 2).state == "conflict"  # and once completed


def test_keys_are_independent(table):
    store = IdempotencyStore(table)
    assert store.begin("a", "h", NOW).state == "new"
    assert store.begin("b", "h", NOW).state == "new"
    assert store.begin("A", "h", NOW).state == "new"


def test_expired_entry_counts_as_absent(table):
    store = IdempotencyStore(table, ttl_s=3600)
    first = store.begin(KEY, "h1", NOW)
    store.complete(KEY, 202, {"run_id": "old"}, owner=first.owner)
    assert store.begin(KEY, "h2", NOW + 3599).state == "conflict"
    fresh = store.begin(KEY, "h2", NOW + 3600)
    assert fresh.state == "new" and fresh.owner != first.owner
    assert store.begin(KEY, "h2", NOW + 3601).state == "in_progress"
    # the first owner's late write must not clobber the new reservation
    assert store.complete(KEY, 202, {"run_id": "late"}, owner=first.owner) is False


def test_stale_in_progress_reservation_is_taken_over(table):
    store = IdempotencyStore(table, stale_after_s=120)
    crashed = store.begin(KEY, "h1", NOW)
    assert store.begin(KEY, "h1", NOW + 119).state == "in_progress"
    taker = store.begin(KEY, "h1", NOW + 120)
    assert taker.state == "new" and taker.owner != crashed.owner
    assert store.abandon(KEY, owner=crashed.owner) is False  # the crashed worker cannot drop the new reservation
    assert store.complete(KEY, 202, {"run_id": "zombie"}, owner=crashed.owner) is False
    assert store.complete(KEY, 202, {"run_id": "r2"}, owner=taker.owner) is True
    assert store.begin(KEY, "h1", NOW + 500).body == {"run_id": "r2"}


def test_completed_entries_never_go_stale(table):
    store = IdempotencyStore(table, stale_after_s=120)
    store.begin(KEY, "h1", NOW)
    store.complete(KEY, 202, {"run_id": "r"})
    assert store.begin(KEY, "h1", NOW + 5000).state == "replay"


def test_abandon_lets_a_retry_through(table):
    store = IdempotencyStore(table)
    first = store.begin(KEY, "h1", NOW)
    assert store.abandon(KEY, owner=first.owner) is True
    assert store.abandon(KEY, owner=first.owner) is False
    retry = store.begin(KEY, "h2", NOW + 1)  # e.g. the client fixed a 400 and retried with the same key
    assert retry.state == "new"


def test_abandon_never_drops_a_completed_response(table):
    store = IdempotencyStore(table)
    first = store.begin(KEY, "h1", NOW)
    store.complete(KEY, 202, {"run_id": "r"}, owner=first.owner)
    assert store.abandon(KEY) is False
    assert store.begin(KEY, "h1", NOW + 1).state == "replay"


def test_complete_without_reservation_is_a_no_op(table):
    assert IdempotencyStore(table).complete("unknown", 202, {}) is False


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_unusable_keys_are_refused(table, key):
    with pytest.raises(IdempotencyKeyError, match="1-255 characters"):
        IdempotencyStore(table).begin(key, "h", NOW)


def test_longest_key_is_accepted(table):
    assert IdempotencyStore(table).begin("k" * 255, "h", NOW).state == "new"


def test_purge_drops_expired_entries(table):
    store = IdempotencyStore(table, ttl_s=100)
    store.begin("old", "h", NOW - 200)
    store.begin("new", "h", NOW - 50)
    assert store.purge(NOW) == 1
    assert store.begin("new", "h", NOW).state == "in_progress"


def test_concurrent_begin_has_exactly_one_winner(table):
    store = IdempotencyStore(table)
    results = _race(8, lambda i: store.begin(KEY, "h1", NOW))
    assert sorted(r.state for r in results) == ["in_progress"] * 7 + ["new"]


def test_concurrent_takeover_of_an_expired_entry_has_exactly_one_winner(table):
    store = IdempotencyStore(table, ttl_s=3600)
    store.begin(KEY, "h1", NOW)
    store.complete(KEY, 202, {"run_id": "old"})
    results = _race(8, lambda i: store.begin(KEY, "h1", NOW + 4000))
    assert sorted(r.state for r in results) == ["in_progress"] * 7 + ["new"]


def test_concurrent_takeover_of_a_stale_reservation_has_exactly_one_winner(table):
    store = IdempotencyStore(table, stale_after_s=120)
    store.begin(KEY, "h1", NOW)
    results = _race(8, lambda i: store.begin(KEY, "h1", NOW + 300))
    assert sorted(r.state for r in results) == ["in_progress"] * 7 + ["new"]


# --- rate limiter ---------------------------------------------------------------------------------------------

def test_allows_limit_then_refuses_with_retry_after(table):
    limiter = RateLimiter(table, limit=3, window_s=60)
    start = 1_700_000_040.0  # a window boundary (multiple of 60)
    decisions = [limiter.hit("ci-bot", start + i) for i in range(3)]
    assert [(d.allowed, d.remaining, d.retry_after_s) for d in decisions] == [(True, 2, 0), (True, 1, 0), (True, 0, 0)]
    refused = limiter.hit("ci-bot", start + 10.2)
    assert (refused.allowed, refused.remaining, refused.retry_after_s) == (False, 0, 50)
    assert limiter.hit("ci-bot", start + 59.5).retry_after_s == 1  # never 0 while refusing


def test_resets_in_the_next_window(table):
    limiter = RateLimiter(table, limit=2, window_s=60)
    start = 1_700_000_040.0
    assert limiter.hit("ci-bot", start).allowed and limiter.hit("ci-bot", start + 1).allowed
    assert not limiter.hit("ci-bot", start + 2).allowed
    nxt = limiter.hit("ci-bot", start + 60)
    assert (nxt.allowed, nxt.remaining) == (True, 1)


def test_a_lagging_clock_does_not_reopen_a_newer_window(table):
    limiter = RateLimiter(table, limit=1, window_s=60)
    start = 1_700_000_040.0
    assert limiter.hit("ci-bot", start + 60).allowed
    lagging = limiter.hit("ci-bot", start + 59)  # another instance, one second behind
    assert (lagging.allowed, lagging.retry_after_s) == (False, 61)  # until the newer window ends


def test_callers_are_counted_separately(table):
    limiter = RateLimiter(table, limit=1, window_s=60)
    assert limiter.hit("a/b#c?", NOW).allowed
    assert limiter.hit("other", NOW).allowed
    assert not limiter.hit("a/b#c?", NOW).allowed


def test_disabled_when_limit_is_not_positive(table):
    for limit in (0, -1):
        limiter = RateLimiter(table, limit=limit, window_s=60)
        assert not limiter.enabled
        assert all(limiter.hit("ci-bot", NOW).allowed for _ in range(5))
    assert list(table.list_entities()) == []


def test_window_must_be_positive(table):
    with pytest.raises(ValueError):
        RateLimiter(table, limit=1, window_s=0)


def test_concurrent_hits_never_exceed_the_limit(table):
    limiter = RateLimiter(table, limit=5, window_s=3600)
    start = 1_700_002_800.0  # a window boundary (multiple of 3600)
    decisions = _race(12, lambda i: limiter.hit("ci-bot", start + i / 100))
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 5
    assert sorted(d.remaining for d in allowed) == [0, 1, 2, 3, 4]
    assert all(d.retry_after_s > 0 for d in decisions if not d.allowed)
    assert not limiter.hit("ci-bot", start + 1).allowed
