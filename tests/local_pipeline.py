"""A local pipeline endpoint for one test module: its own datastore container holding a good and a bad dataset, and
an Event Grid receiver on 127.0.0.1 that answers 202 to the run events it sends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from azure.storage.blob import BlobServiceClient

from local.processes import python_argv, start_on_free_ports
from shared.adapters import storage

EVENTS_PATH = "/runtime/webhooks/eventgrid"


@contextmanager
def pipeline_endpoint(azurite: str, root: Path, good_csv: bytes, *, token: str, bad_path: str,
                      env: dict[str, str] | None = None) -> Iterator[SimpleNamespace]:
    """Yields port, events (the receiver), container and child; `bank/v1/data.csv` is `good_csv`, `bad_path` a file
    the training refuses."""
    from pytest_httpserver import HTTPServer

    events = HTTPServer(host="127.0.0.1", port=0)  # bound now: its port is taken at once
    events.start()
    events.expect_request(EVENTS_PATH, method="POST").respond_with_data("", status=202)
    blobs = BlobServiceClient.from_connection_string(azurite)
    container = f"ds{uuid.uuid4().hex[:8]}"
    storage.ensure_container(blobs, container)
    blobs.get_blob_client(container, "bank/v1/data.csv").upload_blob(good_csv)
    blobs.get_blob_client(container, bad_path).upload_blob(b"age,job\n1,admin.\n")
    try:
        child, (port,) = start_on_free_ports(
            "pipeline", 1, lambda ports: python_argv("local.pipeline_endpoint", "--port", str(ports[0]),
                                                     "--runs-dir", str(root / "runs")),
            log_dir=root, env={"LOCAL_PIPELINE_TOKEN": token, "AzureWebJobsStorage": azurite,
                               "EVENTGRID_WEBHOOK_URL": events.url_for(f"{EVENTS_PATH}?code=k"),
                               "MLFLOW_TRACKING_URI": (root / "mlruns").as_uri(),
                               "LOCAL_DATASTORES": f"workspaceblobstore={container}", **(env or {})})
    except BaseException:
        events.stop()
        raise
    try:
        yield SimpleNamespace(port=port, events=events, container=container, child=child)
    finally:
        child.stop()
        events.stop()
