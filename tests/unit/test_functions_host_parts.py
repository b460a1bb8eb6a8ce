"""The local Functions host's pure parts: route templates, blob path patterns, keys file, settings, responses."""

from __future__ import annotations

import json
import os
import stat

import azure.functions as func
import pytest

from local.functions_host import appsettings
from local.functions_host.blob_trigger import BlobPathError, BlobPathPattern, addressable
from local.functions_host.eventgrid import parse_events, to_binding
from local.functions_host.http_server import to_response
from local.functions_host.keys import load_or_create_keys
from local.functions_host.routes import RouteError, compile_route
from shared.redaction import redact_query


# routes -----------------------------------------------------------------------------------------------------------
def test_literal_and_parameter_routes():
    assert compile_route("runs").match("runs") == {}
    assert compile_route("runs").match("RUNS/") == {}
    assert compile_route("runs").match("runs/1") is None
    assert compile_route("runs/{id}").match("runs/abc") == {"id": "abc"}
    assert compile_route("runs/{id}").match("runs") is None


def test_optional_catch_all_and_defaults():
    r = compile_route("hello/{name?}")
    assert r.match("hello") == {} and r.match("hello/Ann") == {"name": "Ann"}
    assert compile_route("files/{*path}").match("files/a/b/c.csv") == {"path": "a/b/c.csv"}
    assert compile_route("files/{*path}").match("files") == {}
    assert compile_route("page/{n=1}").match("page") == {"n": "1"}


def test_constraints():
    r = compile_route("items/{id:int}")
    assert r.match("items/42") == {"id": "42"} and r.match("items/-3") == {"id": "-3"}
    assert r.match("items/abc") is None and r.match("items/99999999999") is None
    assert compile_route("u/{n:alpha}").match("u/abc") == {"n": "abc"}
    assert compile_route("u/{n:alpha}").match("u/ab1") is None
    assert compile_route("g/{g:guid}").match("g/0f8fad5b-d9cb-469f-a165-70867728950e") is not None
    assert compile_route("g/{g:guid}").match("g/nope") is None
    assert compile_route("n/{n:int:min(10)}").match("n/9") is None
    assert compile_route("n/{n:int:range(1,5)}").match("n/5") == {"n": "5"}
    assert compile_route("s/{s:length(2)}").match("s/abc") is None
    assert compile_route("r/{r:regex(^[a-c]+$)}").match("r/cab") == {"r": "cab"}
    assert compile_route("b/{b:bool}").match("b/True") == {"b": "True"}


def test_several_parameters_in_one_segment():
    assert compile_route("f/{name}.{ext}").match("f/data.v2.csv") == {"name": "data", "ext": "v2.csv"}


@pytest.mark.parametrize("template", ["a/{x:nope}", "a/{*x}/b", "a//b", "a/{x}/{x}", "a/{x?}/b", "a/{bad name}"])
def test_bad_routes(template):
    with pytest.raises(RouteError):
        compile_route(template)


def test_literal_routes_rank_before_parameters():
    ranked = sorted([compile_route("items/{id}"), compile_route("items/{*rest}"), compile_route("items/latest"),
                     compile_route("items/{id:int}")], key=lambda r: r.rank)
    assert [r.template for r in ranked] == ["items/latest", "items/{id:int}", "items/{id}", "items/{*rest}"]


# blob paths -------------------------------------------------------------------------------------------------------
def test_blob_path_patterns():
    p = BlobPathPattern.parse("incoming/{name}")
    assert (p.container, p.prefix) == ("incoming", "")
    assert p.match("a/b.csv") == {"name": "a/b.csv"}
    q = BlobPathPattern.parse("incoming/uploads/{name}.csv")
    assert q.prefix == "uploads/"
    assert q.match("uploads/x.y.csv") == {"name": "x.y"}
    assert q.match("uploads/x.txt") is None and q.match("other/x.csv") is None
    assert BlobPathPattern.parse("incoming").match("anything") == {"name": "anything"}


@pytest.mark.parametrize("path", ["In/{name}", "ab/{name}", "{c}/{name}", "ok-container/{name", "box/{a}{a}"])
def test_bad_blob_paths(path):
    with pytest.raises(BlobPathError):
        BlobPathPattern.parse(path)


# keys -------------------------------------------------------------------------------------------------------------
def test_keys_are_created_private_and_reused(tmp_path):
    keys = load_or_create_keys(tmp_path)
    path = tmp_path / "secrets" / "host.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["masterKey"] == keys.master_key and len(keys.master_key) >= 40
    assert set(doc["functionKeys"]) == {"default"}
    assert set(doc["systemKeys"]) == {"eventgrid_extension", "blobs_extension"}
    assert load_or_create_keys(tmp_path) == keys
    assert keys.master_key not in repr(keys)


def test_key_checks(tmp_path):
    keys = load_or_create_keys(tmp_path)
    fkey, skey = keys.function_keys["default"], keys.system_keys["eventgrid_extension"]
    assert keys.is_function_key(fkey) and keys.is_function_key(keys.master_key)
    assert not keys.is_function_key(skey) and not keys.is_function_key("") and not keys.is_function_key(None)
    assert keys.is_master(keys.master_key) and not keys.is_master(fkey)
    assert keys.is_system_key("eventgrid_extension", skey) and keys.is_system_key("eventgrid_extension",
                                                                                   keys.master_key)
    assert not keys.is_system_key("eventgrid_extension", fkey) and not keys.is_function_key("ключ")


def test_missing_keys_are_added_to_an_existing_file(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "host.json").write_text(json.dumps({"masterKey": "m" * 43}))
    keys = load_or_create_keys(tmp_path)
    assert keys.master_key == "m" * 43 and keys.function_keys["default"] and keys.system_keys["eventgrid_extension"]
    assert load_or_create_keys(tmp_path) == keys


# settings ---------------------------------------------------------------------------------------------------------
def test_local_settings_fill_only_unset_names(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"A": "file", "B": "file", "N": 5}}))
    env = {"A": "env"}
    assert sorted(appsettings.load_local_settings(path, env)) == ["B", "N"]
    assert env == {"A": "env", "B": "file", "N": "5"}
    assert appsettings.load_local_settings(tmp_path / "missing.json", env) == []


def test_bad_local_settings(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text("{nope")
    with pytest.raises(appsettings.SettingsFileError):
        appsettings.load_local_settings(path, {})
    path.write_text(json.dumps({"IsEncrypted": True, "Values": {}}))
    with pytest.raises(appsettings.SettingsFileError, match="encrypted"):
        appsettings.load_local_settings(path, {})


def test_percent_references_and_host_json(tmp_path):
    assert appsettings.resolve("%C%/{name}", {"C": "incoming"}) == "incoming/{name}"
    with pytest.raises(appsettings.MissingSettingError):
        appsettings.resolve("%C%/{name}", {})
    assert appsettings.route_prefix({}) == "api"
    assert appsettings.route_prefix({"extensions": {"http": {"routePrefix": ""}}}) == ""
    assert appsettings.host_id({}) == "retrain-local-host"
    assert appsettings.connection_string("Custom", {"AzureWebJobsCustom": "c"}) == "c"
    assert appsettings.connection_string(None, {"AzureWebJobsStorage": "s"}) == "s"


def test_code_is_redacted_from_logged_queries():
    assert redact_query("code=secret&x=1") == "code=[REDACTED]&x=1"
    assert "secret" not in redact_query("functionName=f&CODE=secret")
    assert redact_query("x=1") == "x=1"


# responses and events ---------------------------------------------------------------------------------------------
def test_http_responses_as_the_host_sends_them():
    r = to_response(func.HttpResponse("{}", status_code=201, mimetype="application/json", headers={"X-A": "1"}))
    assert r.status_code == 201 and (b"content-type", b"application/json") in r.raw_headers
    assert (b"x-a", b"1") in r.raw_headers
    text = to_response(func.HttpResponse("hi"))
    assert (b"content-type", b"text/plain; charset=utf-8") in text.raw_headers
    assert to_response("plain").status_code == 200 and to_response(None).status_code == 204
    assert to_response(b"\x00").media_type == "application/octet-stream"
    with pytest.raises(NotImplementedError):
        to_response({"a": 1})


def test_event_grid_events():
    events = parse_events(json.dumps([{"id": "1", "topic": "t", "subject": "s", "eventType": "E",
                                       "eventTime": "2026-01-01T00:00:00.1234567Z", "data": {"k": 1},
                                       "dataVersion": "2", "metadataVersion": "1"}]).encode())
    event = to_binding(events[0])
    assert isinstance(event, func.EventGridEvent)
    assert (event.id, event.topic, event.subject, event.event_type, event.data_version) == ("1", "t", "s", "E", "2")
    assert event.get_json() == {"k": 1} and event.event_time.year == 2026 and event.event_time.tzinfo is not None
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_events(b"[{")
    with pytest.raises(ValueError, match="array of event objects"):
        parse_events(b"[1, 2]")


@pytest.mark.parametrize("name, ok", [("uploads/a.csv", True), ("a/..b/c.csv", True), (".hidden/x.csv", True),
                                      ("a/../b.csv", False), ("./x.csv", False), ("a/./b", False), ("..", False)])
def test_blobs_with_dot_segments_are_not_addressable(name, ok):
    """The SDK's HTTP stack would remove those segments and reach another blob (or fail the signature)."""
    assert addressable(name) is ok
