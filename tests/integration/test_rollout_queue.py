"""The queued rollout on real Azurite tables and a real Storage queue: `run_completed` answers after claiming and
recording the run, and the rollout's steps resume after an interrupted try without switching traffic again."""

from __future__ import annotations

import json
import uuid

import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from shared.adapters.rollout_queue import rollout_queue
from shared.domain.outcomes import Outcome, RunStatus
from shared.services.on_run_completed import DeliveredEvent, RunCompletion, on_run_completed
from shared.services.rollout import RolloutOrder, give_up, run_rollout
from shared.settings import Settings
from tests.integration.test_completion_azurite import (
    COMPLETED,
    POLICY,
    WORKSPACE,
    Endpoint,
    deployment,
    parts,  # noqa: F401 - the fixture `rig` builds on
    serve_run,
    submitted,
)


class Killed(Exception):
    """What the local host raises into a try that ran past functionTimeout (Azure restarts the worker)."""


@pytest.fixture
def rig(parts):  # noqa: F811 - the imported fixture, asked for by name
    """test_completion_azurite's stores, pipeline and blue/green endpoint double."""
    return parts


class ListQueue:
    def __init__(self):
        self.messages: list[dict] = []

    def put(self, message: dict) -> None:
        self.messages.append(json.loads(json.dumps(message)))


class KilledAfterSwitch(Endpoint):
    """Switches traffic, then the try is killed before `deploy` returns (once)."""

    def __init__(self):
        super().__init__()
        self.kill = True

    def deploy(self, **kwargs):
        answer = super().deploy(**kwargs)
        if self.kill:
            self.kill = False
            raise Killed("Timeout value of 00:00:02 was exceeded by function: Functions.rollout_queue")
        return answer


def queued(rig, queue: ListQueue) -> RunCompletion:
    return RunCompletion(runs=rig["runs"], pipeline=rig["pipeline"], deployment=deployment(rig), policy=POLICY,
                         workspace_id=WORKSPACE, rollouts=queue)


def deliver(rig, queue: ListQueue, run_id: str):
    data = {"runId": run_id, "experimentName": "exp", "runType": "azureml.PipelineRun"}
    return on_run_completed(DeliveredEvent(id=uuid.uuid4().hex, event_type=COMPLETED,
                                           subject=f"experiments/x/runs/{run_id}", data=data, topic=WORKSPACE),
                            queued(rig, queue))


def handed_over(rig, httpserver, run_id: str) -> tuple[ListQueue, RolloutOrder]:
    """A submitted run whose completion event was answered: its rollout waits in the queue."""
    submitted(rig, run_id)
    serve_run(httpserver, run_id)
    queue = ListQueue()
    deliver(rig, queue, run_id)
    return queue, RolloutOrder.parse(queue.messages[0])


def test_the_event_is_answered_after_recording_and_the_rollout_runs_from_the_queue(rig, httpserver):
    submitted(rig, "run-q")
    serve_run(httpserver, "run-q")
    queue = ListQueue()
    answered = deliver(rig, queue, "run-q")
    assert answered.outcome == Outcome.IN_PROGRESS and "rollout_queued" in answered.stages
    assert rig["deployer"].calls == [] and rig["runs"].get("run-q").status == RunStatus.HANDLING
    assert queue.messages == [{"run_id": "run-q", "audit_id": answered.id, "status": "Completed", "via": COMPLETED}]
    assert deliver(rig, queue, "run-q").outcome == Outcome.DUPLICATE and len(queue.messages) == 1  # redelivery

    done = run_rollout(RolloutOrder.parse(queue.messages[0]), queued(rig, queue))
    assert done.id == answered.id and done.outcome == Outcome.DEPLOYED and done.model_version == 1
    assert rig["runs"].get("run-q").status == RunStatus.DEPLOYED and rig["models"].live().version == 1
    again = run_rollout(RolloutOrder.parse(queue.messages[0]), queued(rig, queue), try_number=2)
    assert again.outcome == Outcome.DEPLOYED and [c[0] for c in rig["deployer"].calls] == ["deploy"]


def test_a_try_killed_after_the_traffic_switch_resumes_without_switching_again(rig, httpserver):
    rig["deployer"] = rig["scorer"] = endpoint = KilledAfterSwitch()
    queue, order = handed_over(rig, httpserver, "run-k")
    with pytest.raises(Killed):
        run_rollout(order, queued(rig, queue), try_number=1)
    halfway = rig["audit"].get(order.audit_id)
    assert halfway.outcome == Outcome.IN_PROGRESS and "deploying" in halfway.stages and "deployed" not in halfway.stages
    assert "Killed" in halfway.data["last_error"] and rig["runs"].get("run-k").status == RunStatus.HANDLING

    done = run_rollout(order, queued(rig, queue), try_number=2)
    assert done.outcome == Outcome.DEPLOYED and done.data["deployment"] == {"resumed": True}
    assert [c[0] for c in endpoint.calls] == ["deploy"]  # one traffic switch
    assert len(rig["models"].list()) == 1 and rig["models"].live().version == 1  # registered once
    assert rig["runs"].get("run-k").status == RunStatus.DEPLOYED


def test_a_try_killed_before_the_switch_deploys_on_the_next_try(rig, httpserver):
    queue, order = handed_over(rig, httpserver, "run-b")
    real_deploy = rig["deployer"].deploy
    rig["deployer"].deploy = lambda **kw: (_ for _ in ()).throw(Killed("killed before the switch"))
    with pytest.raises(Killed):
        run_rollout(order, queued(rig, queue))
    rig["deployer"].deploy = real_deploy
    done = run_rollout(order, queued(rig, queue), try_number=2)
    assert done.outcome == Outcome.DEPLOYED and [c[0] for c in rig["deployer"].calls] == ["deploy"]
    assert len(rig["models"].list()) == 1


def test_a_poisoned_rollout_ends_failed_with_its_last_error(rig, httpserver):
    queue, order = handed_over(rig, httpserver, "run-p")
    rig["deployer"].deploy = lambda **kw: (_ for _ in ()).throw(RuntimeError("endpoint quota exceeded"))
    for attempt in (1, 2):
        with pytest.raises(RuntimeError):
            run_rollout(order, queued(rig, queue), try_number=attempt)
    ended = give_up(order, queued(rig, queue))
    assert ended.outcome == Outcome.FAILED
    assert "gave up after 2 tries" in ended.detail and "endpoint quota exceeded" in ended.detail
    run = rig["runs"].get("run-p")
    assert run.status == RunStatus.FAILED and "poison queue" in run.detail
    assert give_up(order, queued(rig, queue)).outcome == Outcome.FAILED  # a second poison copy changes nothing


def test_the_storage_queue_takes_base64_json_and_creates_the_queue(azurite):
    name = f"rollouts{uuid.uuid4().hex[:8]}"
    queue = rollout_queue(Settings(storage_connection=azurite, rollout_queue=name))
    queue.put({"run_id": "r", "audit_id": "a"})  # the queue did not exist
    reader = QueueClient.from_connection_string(azurite, name, message_decode_policy=TextBase64DecodePolicy())
    (message,) = reader.receive_messages()
    assert json.loads(message.content) == {"audit_id": "a", "run_id": "r"}


def test_a_run_released_after_a_killed_switch_is_completed_again_without_switching_again(rig, httpserver):
    rig["deployer"] = rig["scorer"] = endpoint = KilledAfterSwitch()
    queue, order = handed_over(rig, httpserver, "run-r")
    with pytest.raises(Killed):
        run_rollout(order, queued(rig, queue))
    assert rig["runs"].release("run-r")  # the reconcile timer: Handling too long, finished again from scratch
    deliver(rig, queue, "run-r")  # (or the reconcile timer's own completion): a new record, a second message
    second = RolloutOrder.parse(queue.messages[1])
    assert second.audit_id != order.audit_id
    done = run_rollout(second, queued(rig, queue), try_number=1)
    assert done.outcome == Outcome.DEPLOYED and done.data["deployment"] == {"resumed": True}
    assert [c[0] for c in endpoint.calls] == ["deploy"] and len(rig["models"].list()) == 1
