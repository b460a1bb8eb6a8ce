"""Event Grid's delivery semantics as documented in "Event Grid message delivery and retry"
(https://learn.microsoft.com/azure/event-grid/delivery-and-retry): the retry schedule, the codes a webhook
subscription does not retry, the retry policy's limits, the 30 s answer timeout, one event per POST."""

from __future__ import annotations

import json

import pytest
import requests

from local.eventgrid_delivery import (
    ANSWER_TIMEOUT_S,
    Outcome,
    RetryPolicy,
    decide,
    post_event,
    retry_delay_s,
)


def test_the_retry_schedule_is_event_grids():
    assert [retry_delay_s(n) for n in range(1, 13)] == [10, 30, 60, 300, 600, 1800, 3600, 10800, 21600,
                                                         43200, 43200, 43200]
    with pytest.raises(ValueError):
        retry_delay_s(0)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_a_2xx_is_delivered(status):
    assert decide(status, attempts_made=1, first_at=0, now=0).outcome is Outcome.DELIVERED


@pytest.mark.parametrize("status", [400, 401, 403, 413])
def test_what_a_webhook_refuses_is_not_retried(status):
    decision = decide(status, attempts_made=1, first_at=0, now=0)
    assert decision.outcome is Outcome.DROPPED and str(status) in decision.why


@pytest.mark.parametrize("status", [None, 404, 408, 429, 500, 503])
def test_other_answers_and_no_answer_are_retried_on_the_schedule(status):
    decision = decide(status, attempts_made=2, first_at=0, now=100)
    assert decision.outcome is Outcome.RETRY and decision.due == 130


def test_the_retry_policy_ends_at_max_attempts_or_time_to_live():
    assert decide(500, attempts_made=30, first_at=0, now=0).outcome is Outcome.DROPPED
    assert decide(500, attempts_made=29, first_at=0, now=0).outcome is Outcome.RETRY
    # 24 h after the first attempt nothing more is tried, whatever the count
    assert decide(500, attempts_made=12, first_at=0, now=86400 - 43200 + 1).outcome is Outcome.DROPPED
    assert decide(500, attempts_made=3, first_at=0, now=0, policy=RetryPolicy(3, 86400)).outcome is Outcome.DROPPED


class Recorder:
    def __init__(self, answer: int | Exception):
        self.answer = answer
        self.calls: list[tuple[str, dict]] = []

    def post(self, url, **kwargs):
        self.calls.append((url, kwargs))
        if isinstance(self.answer, Exception):
            raise self.answer
        response = requests.Response()
        response.status_code = self.answer
        return response


def test_an_attempt_posts_an_array_of_one_with_the_aeg_headers_and_a_30_s_timeout():
    session = Recorder(202)
    event = {"id": "e-1", "eventType": "X"}
    assert post_event(session, "http://h/hook?code=k", event, delivery_count=3, data_version="2",
                      subscription="S") == 202
    ((url, kwargs),) = session.calls
    assert json.loads(kwargs["data"]) == [event] and kwargs["timeout"] == ANSWER_TIMEOUT_S == 30
    assert kwargs["headers"]["aeg-event-type"] == "Notification"
    assert kwargs["headers"]["aeg-delivery-count"] == "3" and kwargs["headers"]["aeg-subscription-name"] == "S"


def test_no_answer_in_time_is_a_failed_attempt():
    assert post_event(Recorder(requests.Timeout()), "http://h/", {"id": "e"}, delivery_count=0,
                      data_version="") is None


# the pipeline endpoint's run events -------------------------------------------------------------------------------
def _ended_run(run_id: str):
    from local.pipeline_endpoint import LocalRun

    return LocalRun(run_id=run_id, pipeline_id="train", experiment="bank", parameters={"trigger_id": "t-1"},
                    data_paths={}, topic="/subscriptions/s/resourceGroups/r/providers/"
                    "Microsoft.MachineLearningServices/workspaces/w", status="Completed", ended="2026-01-01T00:00:00Z")


def _restarted(tmp_path, answer: int, now: float):
    """A new endpoint process on the same runs folder: the worker loads the runs and queues what is to deliver."""
    from local.pipeline_endpoint import EndpointConfig, RunWorker
    from local.pipeline_endpoint.events import RunEventDelivery
    from local.pipeline_endpoint.runs import RunStore

    delivery = RunEventDelivery("http://h/hook?code=k", RunStore(tmp_path), session=Recorder(answer),
                                clock=lambda: now)
    worker = RunWorker(EndpointConfig(token="t", runs_dir=tmp_path, storage_connection="",
                                      eventgrid_url="http://h/hook"), delivery=delivery)
    return delivery, worker


def test_a_failed_run_event_keeps_its_schedule_across_a_restart_and_its_id_across_attempts(tmp_path):
    from local.pipeline_endpoint.events import RunEventDelivery
    from local.pipeline_endpoint.runs import RunStore

    store = RunStore(tmp_path)
    run = _ended_run("job-1")
    store.save(run)
    down = Recorder(503)
    assert RunEventDelivery("http://h/hook", store, session=down, clock=lambda: 1000.0).attempt(run) is Outcome.RETRY
    saved = json.loads((tmp_path / "job-1" / "run.json").read_text())
    assert (saved["delivery_attempts"], saved["delivery_due"], saved["delivered"]) == (1, 1010.0, False)
    after, worker = _restarted(tmp_path, 202, 1005.0)
    assert after.pending() == [(1010.0, "job-1")]  # not before Event Grid's 10 s
    assert after.attempt(worker.runs["job-1"]) is Outcome.DELIVERED
    ((_, first),), ((_, second),) = down.calls, after.session.calls
    assert json.loads(first["data"])[0]["id"] == json.loads(second["data"])[0]["id"]  # one event, redelivered
    assert second["headers"]["aeg-delivery-count"] == "1"
    assert json.loads((tmp_path / "job-1" / "run.json").read_text())["delivered"] is True
    assert _restarted(tmp_path, 202, 2000.0)[0].pending() == []


def test_a_refused_run_event_is_dropped_and_not_sent_again_after_a_restart(tmp_path):
    from local.pipeline_endpoint.events import RunEventDelivery
    from local.pipeline_endpoint.runs import RunStore

    store = RunStore(tmp_path)
    run = _ended_run("job-2")
    store.save(run)
    assert RunEventDelivery("http://h/hook", store, session=Recorder(401), clock=lambda: 0.0).attempt(run) \
        is Outcome.DROPPED
    assert (tmp_path / "job-2" / "deadletter.json").exists()
    assert _restarted(tmp_path, 202, 10.0)[0].pending() == []
