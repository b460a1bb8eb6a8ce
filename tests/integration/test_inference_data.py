"""Scoring inputs collected to blob storage (Azurite) in batches, and read back as the drift check's window."""

from __future__ import annotations

import json
import time
import uuid

import pandas as pd
import requests
from azure.storage.blob import BlobServiceClient

from shared.adapters.inference_data import InferenceCollector, blob_writer, read_window
from shared.domain import schema
from tests.integration.test_scoring_bluegreen import SCORING_KEY, scoring_server, serve_from_start
from tests.waiting import wait_for


def container(azurite):
    client = BlobServiceClient.from_connection_string(azurite).get_container_client(f"inf{uuid.uuid4().hex[:8]}")
    client.create_container()
    return client


def records(n: int, age: int = 30) -> list[dict]:
    return [{**schema.EXAMPLE_RECORD, "age": age + i} for i in range(n)]


def test_batches_are_written_as_jsonl_and_read_back_in_their_window(azurite):
    blobs = container(azurite)
    collector = InferenceCollector(blob_writer(blobs), max_records=10, max_age_s=60)
    started = time.time()
    collector.add(records(4), "1")
    collector.add(records(3, age=60), "2")
    assert list(blobs.list_blobs()) == []  # add() never writes
    assert collector.flush() == 7
    (blob,) = list(blobs.list_blobs())
    assert blob.name.startswith("model_inputs/") and blob.name.endswith(".jsonl")
    lines = [json.loads(x) for x in blobs.download_blob(blob.name).readall().decode().splitlines()]
    assert [len(x["data"]) for x in lines] == [4, 3] and [x["model_version"] for x in lines] == ["1", "2"]
    window = read_window(blobs, since=started - 1)
    assert list(window.columns) == list(schema.FEATURES) and len(window) == 7
    assert sorted(window["age"]) == [30, 31, 32, 33, 60, 61, 62]
    assert len(read_window(blobs, since=time.time() + 1)) == 0  # nothing after now


def test_a_full_buffer_is_written_by_the_background_thread_and_stop_flushes_the_rest(azurite):
    blobs = container(azurite)
    collector = InferenceCollector(blob_writer(blobs), max_records=5, max_age_s=60).start()
    collector.add(records(6), "1")
    wait_for(lambda: collector.stats["written_records"] == 6, what="the background write")
    collector.add(records(2), "1")
    collector.stop()
    assert collector.stats["written_records"] == 8 and collector.stats["blobs"] == 2


def test_a_failing_store_keeps_the_records_and_a_full_buffer_drops_the_oldest():
    calls = []

    def broken(name, data):
        calls.append(name)
        raise ConnectionError("storage down")

    collector = InferenceCollector(broken, max_records=100, max_buffered=5)
    collector.add(records(3), "1")
    assert collector.flush() == 0 and collector.stats["write_errors"] == 1
    collector.add(records(3), "1")  # 6 buffered > 5: the oldest request goes
    assert collector.stats["dropped_records"] == 3
    written = []
    collector._write = lambda name, data: written.append(data)
    assert collector.flush() == 3 and len(written) == 1


def test_the_scoring_server_collects_what_it_answered(azurite, tmp_path_factory, bank_csv):
    from tests.integration.test_scoring_bluegreen import save_pipeline_model

    frame = pd.read_csv(bank_csv, nrows=800)
    model = save_pipeline_model(tmp_path_factory.mktemp("inf-model") / "m", frame, seed=4)
    name = f"inf{uuid.uuid4().hex[:8]}"
    started = time.time()
    server = scoring_server(tmp_path_factory.mktemp("inf-scoring"), *serve_from_start(model, "3"),
                            "--collect-container", name, env_extra={"INFERENCE_STORAGE": azurite})
    endpoint = next(server)
    try:
        body = {"data": frame[list(schema.FEATURES)].head(4).to_dict(orient="records")}
        headers = {"Authorization": f"Bearer {SCORING_KEY}"}
        for _ in range(3):
            assert requests.post(endpoint.url + "/score", json=body, headers=headers, timeout=10).status_code == 200
        bad = {"data": [{"age": "old"}]}
        assert requests.post(endpoint.url + "/score", json=bad, headers=headers, timeout=10).status_code == 400
    finally:
        next(server, None)  # stops the server: the collector writes what it holds on shutdown
    blobs = BlobServiceClient.from_connection_string(azurite).get_container_client(name)
    wait_for(lambda: len(read_window(blobs, since=started - 1)) == 12, what="12 collected records")
    window = read_window(blobs, since=started - 1)
    assert sorted(window["age"].tolist()) == sorted(body["data"][i]["age"] for i in range(4) for _ in range(3))
