"""Azure ML's data collector layout on blob storage (Azurite): the local collector writes it in batches, the drift
check's reader lists only the window's hour folders of every deployment and reads the envelopes back."""

from __future__ import annotations

import json
import time
import uuid

from azure.storage.blob import BlobServiceClient

from shared.adapters.inference_data import InferenceCollector, blob_writer, read_window
from shared.domain import schema
from tests.waiting import wait_for

ENDPOINT = "bankmarketing-scoring"


def container(azurite):
    client = BlobServiceClient.from_connection_string(azurite).get_container_client(f"inf{uuid.uuid4().hex[:8]}")
    client.create_container()
    return client


def records(n: int, age: int = 30) -> list[dict]:
    return [{**schema.EXAMPLE_RECORD, "age": age + i} for i in range(n)]


def collector(write, **kwargs) -> InferenceCollector:
    return InferenceCollector(write, endpoint=ENDPOINT, **kwargs)


def test_batches_are_written_per_deployment_and_collection_and_read_back_in_their_window(azurite):
    blobs = container(azurite)
    writer = collector(blob_writer(blobs), max_records=10, max_age_s=60)
    started = time.time()
    writer.add(records(4), [0, 1, 0, 0], deployment="blue")
    writer.add(records(3, age=60), [1, 1, 1], deployment="green")
    assert list(blobs.list_blobs()) == []  # add() never writes
    assert writer.flush() == 7
    names = sorted(b.name for b in blobs.list_blobs())
    assert [n.split("/")[:4] for n in names] == [["modelDataCollector", ENDPOINT, d, c] for d in ("blue", "green")
                                                 for c in ("model_inputs", "model_outputs")]
    inputs = [json.loads(x) for x in blobs.download_blob(names[0]).readall().decode().splitlines()]
    outputs = [json.loads(x) for x in blobs.download_blob(names[1]).readall().decode().splitlines()]
    assert len(inputs[0]["data"]) == 4 and outputs[0]["data"] == [{"0": 0}, {"0": 1}, {"0": 0}, {"0": 0}]
    assert inputs[0]["correlationid"] == outputs[0]["correlationid"]  # one request, both collections
    window = read_window(blobs, endpoint=ENDPOINT, since=started - 1)
    assert list(window.columns) == list(schema.FEATURES) and len(window) == 7
    assert sorted(window["age"]) == [30, 31, 32, 33, 60, 61, 62]
    assert len(read_window(blobs, endpoint=ENDPOINT, since=time.time() + 1)) == 0  # nothing after now
    assert len(read_window(blobs, endpoint="another-endpoint", since=started - 1)) == 0


def test_only_the_hour_folders_of_the_window_are_read(azurite):
    blobs = container(azurite)
    now = [1_700_000_000.0]
    writer = collector(blob_writer(blobs), clock=lambda: now[0])
    writer.add(records(2), [0, 0], deployment="blue")
    now[0] += 3 * 3600
    writer.add(records(1, age=70), [1], deployment="blue")
    writer.flush()
    window = read_window(blobs, endpoint=ENDPOINT, since=now[0] - 60, until=now[0] + 60)
    assert window["age"].tolist() == [70]
    assert len(read_window(blobs, endpoint=ENDPOINT, since=now[0] - 4 * 3600, until=now[0] + 60)) == 3


def test_a_full_buffer_is_written_by_the_background_thread_and_stop_flushes_the_rest(azurite):
    blobs = container(azurite)
    writer = collector(blob_writer(blobs), max_records=5, max_age_s=60).start()
    writer.add(records(6), [0] * 6, deployment="blue")
    wait_for(lambda: writer.stats["written_records"] == 6, what="the background write")
    writer.add(records(2), [0] * 2, deployment="blue")
    writer.stop()
    assert writer.stats["written_records"] == 8 and writer.stats["blobs"] == 4  # inputs and outputs, twice


def test_a_failing_store_keeps_the_records_and_a_full_buffer_drops_the_oldest():
    calls = []

    def broken(name, data):
        calls.append(name)
        raise ConnectionError("storage down")

    writer = collector(broken, max_records=100, max_buffered=5)
    writer.add(records(3), [0] * 3, deployment="blue")
    assert writer.flush() == 0 and writer.stats["write_errors"] == 1 and len(calls) == 1  # no outputs either
    writer.add(records(3), [0] * 3, deployment="blue")  # 6 buffered > 5: the oldest request goes
    assert writer.stats["dropped_records"] == 3
    written = []
    writer._write = lambda name, data: written.append(name)
    assert writer.flush() == 3 and [n.split("/")[3] for n in written] == ["model_inputs", "model_outputs"]


def test_a_failed_outputs_write_is_counted_and_never_duplicates_the_inputs():
    written = []

    def inputs_only(name, data):
        if "/model_outputs/" in name:
            raise ConnectionError("storage down")
        written.append(name)

    writer = collector(inputs_only)
    writer.add(records(2), [0, 1], deployment="blue")
    assert writer.flush() == 2 and writer.stats["write_errors"] == 1
    assert writer.flush() == 0 and len(written) == 1  # the inputs are not written again
