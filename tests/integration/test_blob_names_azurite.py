"""Uploads with names storage calls must not use, on a real Azurite: quarantined under the name's hash, and no other
blob is read, written or deleted (every blob request the service makes is recorded)."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from shared.adapters import storage
from shared.adapters.outbox import Outbox
from shared.adapters.quarantine import Quarantine
from shared.bootstrap import build_stores
from shared.domain.blob_names import name_digest, shown
from shared.services.dispatch import DispatchPolicy, RetrainDispatch
from shared.services.on_upload import UploadedBlob, UploadIntake, UploadLimits, on_upload
from shared.services.retrain import PipelineTarget
from shared.settings import Settings
from tests.raw_blob import put_raw

TARGET = PipelineTarget(experiment="exp", datastore="workspaceblobstore", data_input="training_data", budget_s=9)
LIMITS = UploadLimits(min_rows=100, max_bytes=50_000_000)
SIBLING = b"age,job\n1,admin.\n"


@pytest.fixture
def env(azurite):
    suffix = uuid.uuid4().hex[:8]
    incoming, quarantine = f"incoming{suffix}", f"quarantine{suffix}"
    settings = Settings(storage_connection=azurite, datasets_table=f"datasets{suffix}", audit_table=f"audit{suffix}",
                        runs_table=f"runs{suffix}", models_table=f"models{suffix}",
                        datasets_container=f"datasets{suffix}")
    plain = storage.blob_service(settings)
    for name in (incoming, quarantine, settings.datasets_container):
        storage.ensure_container(plain, name)
    requests: list[tuple[str, str]] = []
    recording = BlobServiceClient.from_connection_string(
        azurite, raw_request_hook=lambda r: requests.append((r.http_request.method,
                                                             urlsplit(r.http_request.url).path)))
    stores = build_stores(settings)
    outbox = Outbox(storage.ensure_table(storage.table_service(settings), f"outbox{suffix}"))
    return {"plain": plain, "connection": azurite, "incoming": incoming, "quarantine": quarantine, "requests": requests,
            # no pipeline: a refused name never gets as far as asking for a retrain
            "intake": UploadIntake(limits=LIMITS, quarantine=Quarantine(recording, quarantine), retrain=RetrainDispatch(
                outbox=outbox, runs=stores.runs, pipeline=None, datasets=stores.datasets, audit=stores.audit,
                models=stores.models, target=TARGET, policy=DispatchPolicy(coalesce_s=0))),
            "stores": stores}


def handed_over(container: str, name: str, data: bytes) -> UploadedBlob:
    """What the blob trigger hands the function: `container/name` and the content."""
    return UploadedBlob(name=f"{container}/{name}", data=data, etag="0x8DEADBEEF", uploaded_at=None)


def siblings(env, names) -> dict[str, tuple[str, bytes]]:
    out = {}
    for name in names:
        client = env["plain"].get_blob_client(env["incoming"], name)
        out[name] = (client.get_blob_properties().etag, client.download_blob().readall())
    return out


def assert_quarantined(env, record, name: str, data: bytes, problem: str) -> None:
    digest = name_digest(name)
    path = f"rejected/{digest}/{record.id}"
    assert record.outcome == "rejected" and record.data["name_problem"] == problem
    assert record.data["quarantined_to"] == f"{env['quarantine']}/{path}"
    assert record.data["blob_name_sha256"] == digest
    # the service's only blob requests: the two writes into quarantine under the hash (never the raw name)
    assert env["requests"] == [("PUT", f"/{env['plain'].account_name}/{env['quarantine']}/{path}"),
                               ("PUT", f"/{env['plain'].account_name}/{env['quarantine']}/{path}.reason.json")]
    kept = env["plain"].get_blob_client(env["quarantine"], path)
    assert kept.download_blob().readall() == data
    metadata = kept.get_blob_properties().metadata
    assert metadata["reason"] == problem and metadata["blob_name_sha256"] == digest
    assert metadata["blob_name"] == shown(name)[:1024]
    reason = json.loads(env["plain"].get_blob_client(env["quarantine"], path + ".reason.json")
                        .download_blob().readall())
    assert reason["blob_name_sha256"] == digest and reason["problem"] == problem
    assert reason["blob_name"] == shown(name) and reason["blob_name_length"] == len(name)
    assert "left in" in reason["source"]
    stored = env["stores"].audit.get(record.id)
    assert stored.outcome == "rejected" and stored.source == f"{env['incoming']}/{shown(name)}"
    text = json.dumps(stored.to_dict()) + json.dumps(reason)
    if shown(name) != name:
        assert json.dumps(name)[1:-1] not in text  # the raw name is nowhere, not even JSON-escaped
    assert env["stores"].datasets.list() == [] and env["stores"].runs.list() == []
    assert env["intake"].retrain.outbox.list() == []


@pytest.mark.parametrize("name, sibling", [("a/../b.csv", "b.csv"), ("./x.csv", "x.csv"), ("a/./c.csv", "a/c.csv"),
                                           ("../escape.csv", None)])
def test_dot_segment_names_are_quarantined_under_their_hash_and_nothing_else_is_touched(env, name, sibling):
    if sibling:
        env["plain"].get_blob_client(env["incoming"], sibling).upload_blob(SIBLING)
    before = siblings(env, [sibling] if sibling else [])
    status = put_raw(env["plain"], env["incoming"], name, b"payload of " + name.encode())
    listed = [b.name for b in env["plain"].get_container_client(env["incoming"]).list_blobs()]
    if status == 201:  # Azurite keeps the name as written
        assert name in listed
    else:  # Azurite refuses a name that climbs out of the container: the trigger would never see it
        assert name.startswith("../") and status == 400
    record = on_upload(handed_over(env["incoming"], name, b"payload of " + name.encode()), env["intake"])
    assert_quarantined(env, record, name, b"payload of " + name.encode(), "dot_segment")
    assert siblings(env, before) == before  # the blob the normalised URL would have reached: not read, not changed
    after = [b.name for b in env["plain"].get_container_client(env["incoming"]).list_blobs()]
    assert after == listed  # nothing deleted (the dot-named blob is left where it is, as the record says)


@pytest.mark.parametrize("name, problem", [("/lead.csv", "leading_slash"), ("tail.", "trailing_dot_or_slash"),
                                           ("e" * 1025, "too_long"), ("del\x7f.csv", "control_character"),
                                           ("tab\tname.csv", "control_character")])
def test_other_refused_names_stored_in_azurite_are_quarantined_and_left_in_place(env, name, problem):
    client = env["plain"].get_blob_client(env["incoming"], name)
    client.upload_blob(b"x,y\n1,2\n")
    record = on_upload(handed_over(env["incoming"], name, b"x,y\n1,2\n"), env["intake"])
    assert_quarantined(env, record, name, b"x,y\n1,2\n", problem)
    assert client.download_blob().readall() == b"x,y\n1,2\n"  # still in incoming, unchanged


def test_names_azurite_cannot_keep_are_refused_as_the_trigger_would_hand_them_over(env):
    """A backslash becomes '/' in Azurite, and a C0 control character in a name breaks its container listing (500),
    so the blob trigger could never hand these over from Azurite: the service gets them directly."""
    env["plain"].get_blob_client(env["incoming"], "x\\y.csv").upload_blob(b"1")
    assert [b.name for b in env["plain"].get_container_client(env["incoming"]).list_blobs()] == ["x/y.csv"]
    broken = f"ctl{uuid.uuid4().hex[:8]}"
    env["plain"].create_container(broken).upload_blob("c\x01.csv", b"1")
    once = BlobServiceClient.from_connection_string(env["connection"], retry_total=0)  # a 500 is retried otherwise
    with pytest.raises(HttpResponseError):
        list(once.get_container_client(broken).list_blobs())
    env["plain"].delete_container(broken)
    for name, problem in (("x\\y.csv", "backslash"), ("c\x01.csv", "control_character"),
                          ("\x00", "control_character"), ("", "empty")):
        env["requests"].clear()
        record = on_upload(handed_over(env["incoming"], name, b"1"), env["intake"])
        assert_quarantined(env, record, name, b"1", problem)
