"""The local Functions host answers and delivers as the Azure Functions host and its extensions do. Each test sends
the documented request (or message) and asserts the documented outcome; the sample app is
tests/fixtures/sample_app (its host.json: functionTimeout 3 s, extensions.queues.maxDequeueCount 4)."""

from __future__ import annotations

import base64
import contextlib
import json
import time

import pytest
import requests
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient

from local.functions_host.host_json import HostJsonError, function_timeout_s, queue_options
from tests.integration.test_functions_host import MAX_DEQUEUE, grid_event, post_events, start_host
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def host(azurite, tmp_path_factory):
    h = start_host(tmp_path_factory.mktemp("parity-host"), azurite, "functions-host-parity")
    yield h
    h.stop()


def plain_queue(conn: str, name: str) -> QueueClient:
    client = QueueClient.from_connection_string(conn, name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def peek(conn: str, name: str) -> list[str]:
    try:
        return [m.content for m in QueueClient.from_connection_string(conn, name).peek_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Event Grid webhook ------------------------------------------------------------------------------------------------
# azure-sdk-for-net sdk/eventgrid/Microsoft.Azure.WebJobs.Extensions.EventGrid/src/TriggerBinding/
# HttpRequestProcessor.cs: `aeg-event-type: Unsubscribe` -> 202 Accepted; any other unknown type -> 400.
def test_unsubscribe_is_accepted_and_other_event_types_are_refused(host):
    assert post_events(host, [], kind="Unsubscribe").status_code == 202
    assert post_events(host, [], kind="unsubscribe").status_code == 202  # OrdinalIgnoreCase
    assert post_events(host, [], kind="SubscriptionDeletion").status_code == 400  # not a type the extension knows
    assert post_events(host, [], kind="").status_code == 400


# EventGridExtensionConfigProvider.cs: listeners live in a Dictionary<string, EventGridListener> with the default
# (ordinal, case-sensitive) comparer; a miss answers 404 "cannot find function: '<name>'".
def test_event_grid_function_name_must_match_exactly(host):
    wrong_case = post_events(host, [grid_event(runId="x")], function="ON_EVENT")
    assert wrong_case.status_code == 404 and wrong_case.text == "cannot find function: 'ON_EVENT'"
    assert post_events(host, [grid_event(runId="ok")], function="on_event").status_code == 202


# The host's own function lookup stays case-insensitive (azure-functions-host src/WebJobs.Script/Host/
# ScriptJobHostExtensions.cs, GetFunctionOrNull with OrdinalIgnoreCase).
def test_admin_function_lookup_is_case_insensitive_as_in_azure(host):
    answer = requests.post(host.url + "/admin/functions/ON_STARTUP", json={"input": ""}, headers=host.master,
                           timeout=5)
    assert answer.status_code == 202


# functionTimeout ---------------------------------------------------------------------------------------------------
# https://learn.microsoft.com/azure/azure-functions/functions-host-json#functiontimeout: an invocation running past
# it fails (FunctionTimeoutException) and the host restarts the language worker.
def test_an_invocation_past_function_timeout_fails_at_the_deadline(host):
    started = time.monotonic()
    answer = requests.post(host.url + "/api/slow", params={"seconds": "30", "tag": "late"}, timeout=20)
    elapsed = time.monotonic() - started
    assert answer.status_code == 500
    assert 3 <= elapsed < 10
    assert "Timeout value of 00:00:03 exceeded by function 'Functions.slow'" in host.log()
    quick = requests.post(host.url + "/api/slow", params={"seconds": "0.1", "tag": "quick"}, timeout=20)
    assert quick.status_code == 200
    markers = wait_for(lambda: host.markers("slow"), what="the quick invocation's marker")
    assert [m["name"] for m in markers] == ["quick"]  # the late one was stopped, never reached its end


def test_function_timeout_values_are_read_as_the_azure_host_reads_them():
    assert function_timeout_s({}) == 30 * 60  # no value: 30 minutes outside the legacy Consumption plan
    assert function_timeout_s({"functionTimeout": "00:10:00"}) == 600
    assert function_timeout_s({"functionTimeout": "-1"}) is None  # unbounded (Flex Consumption, Premium)
    with pytest.raises(HostJsonError):
        function_timeout_s({"functionTimeout": "00:00:00.500"})  # below the 1 s minimum


def test_the_project_host_json_fits_the_flex_consumption_plan():
    from local.processes import PROJECT_ROOT

    doc = json.loads((PROJECT_ROOT / "host.json").read_text())
    timeout = function_timeout_s(doc)
    # Flex Consumption: default 30 min, no maximum, but a running execution gets 60 min of grace at scale-in
    # (https://learn.microsoft.com/azure/azure-functions/functions-scale#timeout): stay within the grace.
    assert timeout is not None and timeout <= 60 * 60
    assert queue_options(doc).max_dequeue_count == 5


# Queue trigger -----------------------------------------------------------------------------------------------------
# https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages and
# QueueProcessor.cs: base64 bodies, dequeueCount passed in, retried up to maxDequeueCount, then `<queue>-poison`.
def test_a_queue_message_is_decoded_and_run_once(host, azurite):
    queue = plain_queue(azurite, host.env["WORK_QUEUE"])
    queue.send_message(b64("hello queue"))
    seen = wait_for(lambda: [m for m in host.markers("queue") if m["body"] == "hello queue"], what="the message run")
    assert seen[0]["dequeue_count"] == 1
    wait_for(lambda: not peek(azurite, host.env["WORK_QUEUE"]), what="the message deleted after success")


def test_a_failing_message_is_retried_then_moved_to_the_poison_queue(host, azurite):
    name = host.env["WORK_QUEUE"]
    plain_queue(azurite, name).send_message(b64("fail: always"))
    # the module's host shares the queue: another test's message may be in the poison queue already
    poisoned = wait_for(lambda: (lambda p: p if b64("fail: always") in p else None)(peek(azurite, f"{name}-poison")),
                        timeout=30, what="the poison message")
    assert poisoned.count(b64("fail: always")) == 1  # copied once, as it was, still base64
    tries = [m["dequeue_count"] for m in host.markers("queue") if m["body"] == "fail: always"]
    assert tries == list(range(1, MAX_DEQUEUE + 1))
    assert not peek(azurite, name)


def test_a_message_that_is_not_base64_goes_to_the_poison_queue_unrun(host, azurite):
    name = host.env["WORK_QUEUE"]
    plain_queue(azurite, name).send_message("not base64 {json}")
    assert wait_for(lambda: "not base64 {json}" in peek(azurite, f"{name}-poison"), timeout=30,
                    what="the undecodable message poisoned")
    assert not [m for m in host.markers("queue") if "json" in m["body"]]
