"""Storage plumbing shared by the timer and blob listeners: clients that fail fast when storage is unreachable,
the `azure-webjobs-hosts` container, and a blob-lease lock (the real host's singleton locks)."""

from __future__ import annotations

import logging
import uuid

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobLeaseClient, BlobServiceClient, ContainerClient
from azure.storage.blob import LinearRetry as BlobLinearRetry
from azure.storage.queue import LinearRetry as QueueLinearRetry
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

log = logging.getLogger("functions_host")

HOSTS_CONTAINER = "azure-webjobs-hosts"
POISON_QUEUE = "webjobs-blobtrigger-poison"
# Per socket operation, not per call (azure/core/pipeline/transport/_requests_basic.py hands requests the pair
# `(connection_timeout, read_timeout)`); the storage SDK's own defaults are 20 s and 60 s (azure/storage/blob/
# _shared/constants.py, CONNECTION_TIMEOUT and READ_TIMEOUT). A call still in flight at shutdown is not waited for
# past the host's grace (lifecycle.threads_finished).
_TIMEOUTS = {"connection_timeout": 5, "read_timeout": 20}


def _retry(policy_type):
    """One quick retry: the SDK default (ExponentialRetry, 15 s first back-off, then 18 s and 24 s, 3 retries:
    https://learn.microsoft.com/azure/storage/blobs/storage-retry-policy-python) would stall a poll for a minute
    when storage is down; the listeners poll again anyway."""
    return policy_type(backoff=0.3, retry_total=1, random_jitter_range=0.1)


def blob_service(connection_string: str) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(connection_string, retry_policy=_retry(BlobLinearRetry),
                                                    **_TIMEOUTS)


def poison_queue(connection_string: str) -> QueueClient:
    """The poison queue, with the base64 message encoding Functions queues use by default."""
    return encoded_queue(connection_string, POISON_QUEUE)


def encoded_queue(connection_string: str, name: str) -> QueueClient:
    """A queue whose message text is base64-encoded, as the Storage extensions' queue clients write it."""
    return QueueClient.from_connection_string(connection_string, name,
                                              message_encode_policy=TextBase64EncodePolicy(),
                                              message_decode_policy=TextBase64DecodePolicy(),
                                              retry_policy=_retry(QueueLinearRetry), **_TIMEOUTS)


def plain_queue(connection_string: str, name: str) -> QueueClient:
    """A queue client that sends and receives message text as it is (the queue trigger decodes bodies itself)."""
    return QueueClient.from_connection_string(connection_string, name, retry_policy=_retry(QueueLinearRetry),
                                              **_TIMEOUTS)


def ensure_container(container: ContainerClient) -> ContainerClient:
    try:
        container.create_container()
    except ResourceExistsError:
        pass
    return container


def ensure_queue(queue: QueueClient) -> QueueClient:
    try:
        queue.create_queue()
    except ResourceExistsError:
        pass
    return queue


def ensure_blob(container: ContainerClient, blob_name: str, metadata: dict[str, str] | None = None) -> bool:
    """Create an empty blob if absent (and its container); True when this call created it."""
    blob = container.get_blob_client(blob_name)
    for _ in range(2):
        try:
            blob.upload_blob(b"", overwrite=False, metadata=metadata)
            return True
        except ResourceExistsError:
            return False
        except ResourceNotFoundError:  # the container is missing
            ensure_container(container)
        except HttpResponseError as exc:
            if is_conflict(exc):  # exists, leased by someone
                return False
            raise
    return False


def is_conflict(exc: HttpResponseError) -> bool:
    return getattr(exc, "status_code", None) in (409, 412)


class LeaseLock:
    """A lock held as a lease on a blob; only one holder across processes. Sync: call from a worker thread."""

    def __init__(self, container: ContainerClient, blob_name: str, duration_s: int = 15):
        if not 15 <= duration_s <= 60:
            raise ValueError("a blob lease lasts 15 to 60 seconds")
        self.blob = container.get_blob_client(blob_name)
        self.container = container
        self.duration_s = duration_s
        self.lease_id = str(uuid.uuid4())
        self._lease: BlobLeaseClient | None = None

    @property
    def held(self) -> bool:
        return self._lease is not None

    def try_acquire(self) -> bool:
        if self._lease is not None:
            return True
        for _ in range(2):
            try:
                self._lease = self.blob.acquire_lease(lease_duration=self.duration_s, lease_id=self.lease_id)
                return True
            except ResourceNotFoundError:
                ensure_blob(self.container, self.blob.blob_name)
            except HttpResponseError as exc:
                if is_conflict(exc):
                    return False
                raise
        return False

    def renew(self) -> bool:
        if self._lease is None:
            return False
        try:
            self._lease.renew()
            return True
        except HttpResponseError as exc:
            if is_conflict(exc) or getattr(exc, "status_code", None) == 404:
                self._lease = None
                return False
            raise

    def release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            try:
                lease.release()
            except Exception as exc:  # the lease expires on its own
                log.debug("could not release lease on %s: %s", self.blob.blob_name, exc)
