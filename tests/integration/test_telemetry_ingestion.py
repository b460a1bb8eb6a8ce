"""shared.telemetry in azure-monitor mode, on the wire: the real exporter POSTs to a loopback ingestion endpoint.

Each emitting process is a subprocess (OpenTelemetry's global providers are set once per process), with
statsbeat, SDK stats, the control plane and live metrics off, resource detection limited to the environment,
and an audit hook that refuses (and reports) any socket connection or name lookup that is not loopback.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IKEY = "00000000-0000-0000-0000-000000000000"
RUN_ID = "run-7f3a2c"

CHILD = r'''
import ipaddress, json, logging, os, sys

attempts = []

def loopback(host):
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False

def audit(event, args):
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple):
            attempts.append(str(address[0]))
            if not loopback(str(address[0])):
                raise OSError(f"test refuses to connect to {address[0]}")
    elif event == "socket.getaddrinfo" and args[0] is not None:
        host = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        attempts.append(host)
        if not loopback(host):
            raise OSError(f"test refuses to look up {host}")

sys.addaudithook(audit)

from shared import telemetry

logging.getLogger("shared").setLevel(logging.INFO)
mode = telemetry.configure_from_env(live_metrics=False, azure_options={"disable_offline_storage": True})
out = {"mode": mode}
if sys.argv[1] == "upload":
    with telemetry.span("blob_upload", kind="consumer", blob="incoming/bank.csv", api_key="k-SECRET") as up:
        with telemetry.span("submit_pipeline") as submit:
            submit.set(run_id=sys.argv[2])  # known once the pipeline accepted the run; reaches blob_upload too
            out["carrier"] = telemetry.inject()
            logging.getLogger("shared.services.on_upload").info("submitted run %s", sys.argv[2])
            # no record factory installed in this process: the exporter's own log processor must mask these
            logging.getLogger("shared.adapters.x").warning("service said %s", "Authorization: Bearer TOKEN-SECRET-1")
            try:
                raise RuntimeError("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=ACCOUNT-SECRET-2;")
            except RuntimeError:
                logging.getLogger("shared.adapters.x").exception("storage call failed")
        telemetry.record_metric("retrain.validation_rows", 32950, run_id=sys.argv[2])
        out.update(trace_id=telemetry.current_trace_id(), upload_span=up.span_id)
else:
    with telemetry.span("run_completed", kind="consumer", parent=json.loads(sys.argv[3]), run_id=sys.argv[2]):
        with telemetry.span("deploy"):
            out["trace_id"] = telemetry.current_trace_id()
telemetry.flush()
out["attempts"] = sorted(set(attempts))
print(json.dumps(out))
'''


@pytest.fixture
def ingestion(httpserver):
    """A loopback Application Insights ingestion endpoint that accepts every envelope and keeps them."""
    received: list[tuple[str, dict]] = []

    def track(request):
        from werkzeug import Response

        body = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        items = json.loads(body)
        received.extend((request.path, item) for item in items)
        answer = {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
        return Response(json.dumps(answer), status=200, content_type="application/json")

    httpserver.expect_request("/v2.1/track", method="POST").respond_with_handler(track)
    return httpserver, received


def run_child(tmp_path: Path, endpoint: str, *args: str) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS", "OTEL_"))}
    env.update(
        APPLICATIONINSIGHTS_CONNECTION_STRING=f"InstrumentationKey={IKEY};IngestionEndpoint={endpoint}",
        APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true",
        APPLICATIONINSIGHTS_SDKSTATS_DISABLED="true",
        APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED="true",
        OTEL_EXPERIMENTAL_RESOURCE_DETECTORS="otel",  # no Azure VM metadata (IMDS) lookup
        PYTHONPATH=str(ROOT),
        TMPDIR=str(tmp_path),  # anything the exporter might keep on disk stays in the test's folder
    )
    done = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr


def test_one_trace_from_upload_to_deploy_reaches_application_insights(ingestion, tmp_path):
    server, received = ingestion
    endpoint = f"http://{server.host}:{server.port}/"

    upload, upload_output = run_child(tmp_path, endpoint, "upload", RUN_ID)
    assert upload["mode"] == "azure-monitor"
    complete, complete_output = run_child(tmp_path, endpoint, "complete", RUN_ID, json.dumps(upload["carrier"]))
    assert complete["mode"] == "azure-monitor"

    # Only the loopback endpoint was contacted, only on the ingestion path.
    for result in (upload, complete):
        assert result["attempts"], "the exporter should have connected to the loopback endpoint"
        assert set(result["attempts"]) <= {server.host, "127.0.0.1", "localhost", "::1"}, result["attempts"]
    assert received and {path for path, _ in received} == {"/v2.1/track"}
    server.check_assertions()

    trace_id = upload["trace_id"]
    assert len(trace_id) == 32 and complete["trace_id"] == trace_id  # one trace across the two processes

    def envelopes(kind: str) -> dict[str, dict]:
        return {item["data"]["baseData"].get("name", ""): item for _, item in received
                if item["name"] == f"Microsoft.ApplicationInsights.{kind}"}

    requests, dependencies = envelopes("Request"), envelopes("RemoteDependency")
    assert {"blob_upload", "run_completed"} <= set(requests)
    assert {"submit_pipeline", "deploy"} <= set(dependencies)
    for item in (requests["blob_upload"], requests["run_completed"], dependencies["submit_pipeline"],
                 dependencies["deploy"]):
        assert item["iKey"] == IKEY
        assert item["tags"]["ai.operation.id"] == trace_id
        assert item["tags"]["ai.cloud.role"] == "bankmarketing-retrain"
        assert item["data"]["baseData"]["properties"]["run_id"] == RUN_ID
    assert requests["blob_upload"]["data"]["baseData"]["properties"]["api_key"] == "[REDACTED]"
    # The completion continues from the submit span the upload stored with the run.
    submit_id = dependencies["submit_pipeline"]["data"]["baseData"]["id"]
    assert requests["run_completed"]["tags"]["ai.operation.parentId"] == submit_id
    assert upload["carrier"]["traceparent"].split("-")[2] == submit_id

    messages = [item for _, item in received if item["name"] == "Microsoft.ApplicationInsights.Message"]
    logged = [m for m in messages if m["data"]["baseData"]["message"] == f"submitted run {RUN_ID}"]
    assert logged and logged[0]["tags"]["ai.operation.id"] == trace_id
    assert logged[0]["tags"]["ai.operation.parentId"] == submit_id

    metrics = [m for _, item in received if item["name"] == "Microsoft.ApplicationInsights.Metric"
               for m in item["data"]["baseData"]["metrics"] if m["name"] == "retrain.validation_rows"]
    assert metrics and metrics[0]["value"] == 32950

    everything = json.dumps([item for _, item in received]) + upload_output + complete_output
    assert "k-SECRET" not in everything
    assert "TOKEN-SECRET-1" not in everything and "ACCOUNT-SECRET-2" not in everything
    said = [m for m in messages if m["data"]["baseData"]["message"].startswith("service said")]
    assert said and said[0]["data"]["baseData"]["message"] == "service said Authorization: Bearer [REDACTED]"
    failures = [item for _, item in received if item["name"] == "Microsoft.ApplicationInsights.Exception"]
    assert failures and "AccountKey=[REDACTED]" in json.dumps(failures)
    assert f"InstrumentationKey={IKEY}" not in upload_output + complete_output
