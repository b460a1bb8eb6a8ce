"""Blob trigger: a new dataset file in the incoming container."""

import azure.functions as func

from shared.bootstrap import services
from shared.services.on_upload import UploadedBlob, on_upload

bp = func.Blueprint()


@bp.function_name("blob_upload")
@bp.blob_trigger(arg_name="blob", path="%INCOMING_CONTAINER%/{name}", connection="AzureWebJobsStorage")
def blob_upload(blob: func.InputStream) -> None:
    s = services()
    props = getattr(blob, "blob_properties", None) or {}
    modified = props.get("LastModified")
    uploaded_at = modified.timestamp() if hasattr(modified, "timestamp") else None
    etag = str(props.get("ETag") or props.get("Etag") or "").strip('"')
    upload = UploadedBlob(name=blob.name or "", data=blob.read(), etag=etag, uploaded_at=uploaded_at)
    on_upload(upload, limits=s.limits, target=s.target, datasets=s.datasets, quarantine=s.quarantine,
              pipeline=s.pipeline, runs=s.runs, audit=s.audit)
