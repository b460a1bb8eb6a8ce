"""shared.telemetry without Azure: local JSON-lines spans, trace continuation, redaction, idempotence, lazy import."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared import telemetry
from shared.telemetry import setup as telemetry_setup
from shared.telemetry import state as telemetry_state

ROOT = Path(__file__).resolve().parents[2]
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """Each test configures its own backend; the pytest process's global OpenTelemetry providers stay untouched."""
    telemetry.shutdown()
    monkeypatch.setattr(telemetry_state._process, "globals_set", True)
    yield
    telemetry.shutdown()


@pytest.fixture
def local(tmp_path) -> Path:
    assert telemetry.configure(local_dir=tmp_path) == "local"
    return tmp_path


def spans(directory: Path) -> dict[str, dict]:
    lines = (directory / telemetry.SPANS_FILE).read_text().splitlines()
    return {row["name"]: row for row in map(json.loads, lines)}


def test_local_mode_writes_parent_child_spans_with_attributes(local):
    with telemetry.span("blob_upload", kind="consumer", blob="incoming/bank.csv", rows=32950, run_id="run-1") as up:
        with telemetry.span("validate", dialect="semicolon"):
            pass
        with telemetry.span("submit_pipeline") as submit:
            submit.set(experiment="bankmarketing-retrain")
        trace_id = telemetry.current_trace_id()
        assert up.trace_id == trace_id and len(trace_id) == 32

    found = spans(local)
    assert set(found) == {"blob_upload", "validate", "submit_pipeline"}
    root, child = found["blob_upload"], found["submit_pipeline"]
    assert root["parent_id"] is None and root["kind"] == "CONSUMER"
    assert child["parent_id"] == root["span_id"] == found["validate"]["parent_id"]
    assert {s["trace_id"] for s in found.values()} == {trace_id}
    assert root["attributes"] == {"blob": "incoming/bank.csv", "rows": 32950, "run_id": "run-1"}
    assert child["attributes"] == {"run_id": "run-1", "experiment": "bankmarketing-retrain"}  # run_id inherited
    assert all(s["status"] == "OK" for s in found.values())
    assert root["duration_ms"] >= child["duration_ms"] >= 0
    assert root["start_time"].endswith("Z") and root["start_time"] <= child["start_time"] <= root["end_time"]
    assert root["service"] == telemetry.SERVICE_NAME and root["events"] == []


def test_run_id_set_later_reaches_the_spans_opened_after(local):
    with telemetry.span("retrain_http") as s:
        with telemetry.span("before"):
            pass
        s.set(run_id="run-7", dataset_version=3)
        with telemetry.span("after"):
            pass
    found = spans(local)
    assert "run_id" not in found["before"]["attributes"]
    assert found["after"]["attributes"] == {"run_id": "run-7", "dataset_version": 3}
    assert found["retrain_http"]["attributes"] == {"run_id": "run-7", "dataset_version": 3}


def test_run_id_found_in_a_child_reaches_the_open_ancestors_and_later_spans(local):
    with telemetry.span("blob_upload", run_id=None):
        with telemetry.span("validate"):
            pass
        with telemetry.span("retrain"):
            with telemetry.span("submit_pipeline") as submit:
                submit.set(run_id="run-9", experiment="x")
            with telemetry.span("record_run"):
                pass
        with telemetry.span("audit"):
            pass
    found = spans(local)
    assert "run_id" not in found["validate"]["attributes"]  # ended before the run id was known
    for name in ("blob_upload", "retrain", "submit_pipeline", "record_run", "audit"):
        assert found[name]["attributes"]["run_id"] == "run-9", name
    assert "experiment" not in found["blob_upload"]["attributes"]  # only the inherited keys travel


def test_exception_marks_the_span_error_and_is_reraised(local):
    with pytest.raises(RuntimeError, match="deploy refused"), telemetry.span("deploy", run_id="run-2"):
        raise RuntimeError("deploy refused (AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net)")
    row = spans(local)["deploy"]
    assert row["status"] == "ERROR"
    assert row["status_description"].startswith("RuntimeError: deploy refused")
    (event,) = row["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "RuntimeError"
    assert "Traceback" in event["attributes"]["exception.stacktrace"]
    assert "c2VjcmV0" not in json.dumps(row)  # the embedded key is masked in message, status and stack


def test_fail_marks_error_without_exception(local):
    with telemetry.span("smoke_test") as s:
        s.fail("scoring endpoint answered 500")
    row = spans(local)["smoke_test"]
    assert (row["status"], row["status_description"]) == ("ERROR", "scoring endpoint answered 500")


def test_parent_carrier_continues_the_trace(local):
    with telemetry.span("submit_pipeline", run_id="run-3") as submit:
        carrier = telemetry.inject()
        upload_trace = telemetry.current_trace_id()
    assert set(carrier) <= {"traceparent", "tracestate"} and TRACEPARENT.match(carrier["traceparent"])
    assert telemetry.current_trace_id() == "" and telemetry.inject() == {}  # outside any span

    # The completion handler finds the carrier among the run's tags (other keys, any case) and continues.
    tags = {"Traceparent": carrier["traceparent"], "trigger": "blob", "dataset_version": "4"}
    with telemetry.span("run_completed", kind="consumer", parent=tags, run_id="run-3"):
        assert telemetry.current_trace_id() == upload_trace
        with telemetry.span("deploy"):
            pass
    found = spans(local)
    assert found["run_completed"]["trace_id"] == upload_trace == found["deploy"]["trace_id"]
    assert found["run_completed"]["parent_id"] == submit.span_id
    assert found["deploy"]["parent_id"] == found["run_completed"]["span_id"]


def test_malformed_carrier_starts_a_new_trace(local):
    with telemetry.span("run_completed", parent={"traceparent": "not-a-traceparent"}):
        trace_id = telemetry.current_trace_id()
    row = spans(local)["run_completed"]
    assert row["parent_id"] is None and row["trace_id"] == trace_id != ""


def test_sensitive_attributes_are_redacted(local):
    with telemetry.span("call", api_key="k-123", sas_token="sv=2024&sig=SASSIG", password="hunter2",
                        Authorization="Bearer eyJ0eXAi", connection_string="DefaultEndpointsProtocol=https;x",
                        client_secret="s3cr3t", functionKey="fk-1", **{"x-functions-key": "fk-2"},
                        url="https://acct.blob.core.windows.net/c/b?sv=2024&sig=SIGVALUE",
                        header="Authorization: Bearer TOKENVALUE", dataset_version=5, blob="incoming/a.csv",
                        options={"nested": {"token": "NESTEDTOKEN"}, "ok": 1}, ignored=None):
        pass
    row = spans(local)["call"]
    attrs = row["attributes"]
    for key in ("api_key", "sas_token", "password", "Authorization", "connection_string", "client_secret",
                "functionKey", "x-functions-key"):
        assert attrs[key] == telemetry.REDACTED, key
    assert attrs["dataset_version"] == 5 and attrs["blob"] == "incoming/a.csv"
    assert attrs["url"] == f"https://acct.blob.core.windows.net/c/b?sv=2024&sig={telemetry.REDACTED}"
    assert attrs["header"] == f"Authorization: Bearer {telemetry.REDACTED}"
    assert json.loads(attrs["options"]) == {"nested": {"token": telemetry.REDACTED}, "ok": 1}
    assert "ignored" not in attrs
    text = (local / telemetry.SPANS_FILE).read_text()
    for secret in ("k-123", "SASSIG", "hunter2", "eyJ0eXAi", "s3cr3t", "fk-1", "fk-2", "SIGVALUE", "TOKENVALUE",
                   "NESTEDTOKEN"):
        assert secret not in text, secret


def test_sanitize_keeps_valid_otel_types():
    clean = telemetry.sanitize({"n": 1, "f": 0.5, "b": True, "s": "x", "seq": ["a", "b"], "mixed": [1, "a"],
                                "path": Path("/tmp/x"), "none": None})
    assert clean == {"n": 1, "f": 0.5, "b": True, "s": "x", "seq": ("a", "b"), "mixed": '[1, "a"]',
                     "path": "/tmp/x"}


def test_configured_connection_string_is_masked_everywhere():
    telemetry_state._state.secrets = telemetry_setup._secrets_of(
        "InstrumentationKey=11111111-2222-3333-4444-555555555555;IngestionEndpoint=https://example.invalid/")
    text = telemetry.scrub("key 11111111-2222-3333-4444-555555555555 leaked")
    assert "11111111-2222" not in text


def test_configure_is_idempotent(tmp_path):
    assert telemetry.configure(local_dir=tmp_path / "a") == "local"
    assert telemetry.configure(local_dir=tmp_path / "b", console=True) == "local"  # unchanged
    assert telemetry.mode() == "local"
    with telemetry.span("once"):
        pass
    assert len((tmp_path / "a" / telemetry.SPANS_FILE).read_text().splitlines()) == 1  # one exporter, one line
    assert not (tmp_path / "b").exists()


def test_off_until_configured_and_everything_is_a_no_op(tmp_path):
    assert telemetry.configure() == "off"
    with telemetry.span("nothing", run_id="r") as s:
        s.set(x=1).event("e")
        assert telemetry.current_trace_id() == "" and telemetry.inject() == {}
    telemetry.record_metric("retrain.runs", 1, kind="counter")
    telemetry.flush()
    # "off" is not sticky: a later call can still configure.
    assert telemetry.configure(local_dir=tmp_path) == "local"


def test_off_mode_passes_a_parent_carrier_on():
    parent = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with telemetry.span("relay", parent=parent):
        assert telemetry.current_trace_id() == "0af7651916cd43dd8448eb211c80319c"
        assert telemetry.inject()["traceparent"] == parent["traceparent"]


def test_console_mode_prints_one_json_line_per_span(capsys):
    assert telemetry.configure(console=True) == "console"
    with telemetry.span("drift_check", share=0.25):
        pass
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and json.loads(err[0])["attributes"] == {"share": 0.25}


def test_local_metrics_are_written_on_flush(local):
    telemetry.record_metric("retrain.upload_to_serving_s", 42.5, unit="s", run_id="run-4", token="t0k")
    telemetry.record_metric("retrain.upload_to_serving_s", 7.5, unit="s", run_id="run-4", token="t0k")
    telemetry.record_metric("retrain.outcomes", 1, kind="counter", outcome="deployed")
    with pytest.raises(ValueError, match="kind"):
        telemetry.record_metric("retrain.bad", 1, kind="gauge")
    telemetry.flush()
    rows = {r["name"]: r for r in map(json.loads, (local / telemetry.METRICS_FILE).read_text().splitlines())}
    hist, count = rows["retrain.upload_to_serving_s"], rows["retrain.outcomes"]
    assert (hist["type"], hist["count"], hist["sum"], hist["min"], hist["max"]) == ("histogram", 2, 50.0, 7.5, 42.5)
    assert hist["attributes"] == {"run_id": "run-4", "token": telemetry.REDACTED} and hist["unit"] == "s"
    assert (count["type"], count["value"], count["attributes"]) == ("sum", 1, {"outcome": "deployed"})


def test_spans_from_threads_append_whole_lines(local):
    import threading

    def work(i):
        with telemetry.span(f"t{i}", i=i):
            pass

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(spans(local)) == 8


def test_import_does_not_load_azure_monitor_or_the_sdk(tmp_path):
    code = (
        "import sys\n"
        "from shared import telemetry\n"
        "assert not [m for m in sys.modules if m.startswith(('azure.monitor', 'opentelemetry.sdk'))]\n"
        f"assert telemetry.configure(local_dir={str(tmp_path)!r}) == 'local'\n"
        "with telemetry.span('x'):\n"
        "    pass\n"
        "assert not [m for m in sys.modules if m.startswith('azure.monitor')]\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
