"""Blob trigger: a new dataset file in the incoming container.

Its source is Event Grid (uploads trigger in seconds, no container scanning; the only source the Flex Consumption
plan supports), in Azure and on the local stack alike, where local/storage_events.py stands in for the storage
account's system topic. `BLOB_TRIGGER_SOURCE=LogsAndContainerScan` selects polling instead. The binding is read
when the worker indexes the app, so the setting is an app setting like any other."""

import os
from datetime import datetime

import azure.functions as func

from shared.bootstrap import services
from shared.services.on_upload import UploadedBlob, on_upload

bp = func.Blueprint()


def blob_source(env=os.environ) -> func.BlobSource:
    return func.BlobSource(env.get("BLOB_TRIGGER_SOURCE") or "EventGrid")


@bp.function_name("blob_upload")
@bp.blob_trigger(arg_name="blob", path="%INCOMING_CONTAINER%/{name}", connection="AzureWebJobsStorage",
                 source=blob_source())
def blob_upload(blob: func.InputStream) -> None:
    s = services()
    props = getattr(blob, "blob_properties", None) or {}
    uploaded_at = _timestamp(props.get("LastModified"))
    etag = str(props.get("ETag") or props.get("Etag") or "").strip('"')
    upload = UploadedBlob(name=blob.name or "", data=blob.read(), etag=etag, uploaded_at=uploaded_at)
    on_upload(upload, s.upload)


def _timestamp(value) -> float | None:
    """The worker hands blob properties over as JSON strings (ISO 8601); be lenient about the form."""
    if hasattr(value, "timestamp"):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
