"""Create a blob whose name has `.`/`..` segments, as written: the storage SDK cannot (its HTTP stack removes dot
segments from the URL, RFC 3986 5.2.4, and the shared-key signature then no longer matches), a raw HTTP client can."""

from __future__ import annotations

import http.client
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas


def put_raw(service: BlobServiceClient, container: str, name: str, data: bytes) -> int:
    """PUT a block blob named exactly `name` (http.client sends the path as given), authorised by a short container
    SAS (its signature does not cover the blob name). Returns the HTTP status (201 when created)."""
    sas = generate_container_sas(service.account_name, container, account_key=service.credential.account_key,
                                 permission=ContainerSasPermissions(write=True, create=True),
                                 expiry=datetime.now(UTC) + timedelta(minutes=10))
    url = urlsplit(service.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("PUT", f"{url.path.rstrip('/')}/{container}/{quote(name, safe='/.')}?{sas}", body=data,
                     headers={"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06"})
        return conn.getresponse().status
    finally:
        conn.close()
