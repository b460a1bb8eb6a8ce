"""Blob triggers by container polling, with the real host's bookkeeping: one blob receipt per function, ETag and
blob (`azure-webjobs-hosts/blobreceipts/{hostId}/{functionId}/{etag}/{container}/{blob}`), leased while a try
runs, tries counted in its metadata, and after the last failed try a message on `webjobs-blobtrigger-poison`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.functions import meta
from azure.functions.blob import BlobConverter
from azure.storage.blob import BlobLeaseClient, BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from local.functions_host.dispatch import Invocations, Settle, TryLimit
from local.functions_host.invoker import Invoker
from local.functions_host.loader import IndexedFunction
from local.functions_host.log import short_error
from local.functions_host.storage import POISON_QUEUE, ensure_blob, ensure_queue, is_conflict

log = logging.getLogger("functions_host")

INCOMPLETE = "IncompleteFunctionInvocationId"
TRIES = "DequeueCount"
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$|^\$root$|^\$web$")
_PARAM = re.compile(r"\{([A-Za-z_]\w*)\}")


class BlobPathError(ValueError):
    pass


@dataclass(frozen=True)
class BlobPathPattern:
    """`container/blob-pattern`, e.g. `incoming/{name}` or `incoming/uploads/{name}.csv`."""

    container: str
    blob_pattern: str
    prefix: str
    regex: re.Pattern = field(compare=False)

    @classmethod
    def parse(cls, path: str) -> BlobPathPattern:
        container, sep, blob = path.strip().lstrip("/").partition("/")
        if not _CONTAINER.match(container):
            raise BlobPathError(f"'{container}' in blob path '{path}' is not a valid container name")
        if not sep or not blob:
            blob = "{name}"  # a bare container means every blob in it
        if "{" in _PARAM.sub("", blob) or "}" in _PARAM.sub("", blob):
            raise BlobPathError(f"blob path '{path}' has a malformed {{parameter}}")
        pattern, names = "", set()
        for i, piece in enumerate(_PARAM.split(blob)):
            if i % 2 == 0:
                pattern += re.escape(piece)
            elif piece in names:
                raise BlobPathError(f"parameter '{piece}' appears twice in blob path '{path}'")
            else:
                names.add(piece)
                pattern += f"(?P<{piece}>.+?)"
        return cls(container, blob, blob.split("{", 1)[0], re.compile(pattern, re.S))

    def match(self, blob_name: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(blob_name)
        return m.groupdict() if m else None


@dataclass
class SeenBlob:
    name: str
    etag: str
    url: str
    properties: dict
    metadata: dict

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.etag


@dataclass
class Claim:
    receipt: object
    lease: BlobLeaseClient
    tries: int
    exhausted: bool = False


class Unclaimed(Enum):
    """Why a try does not run: the receipt says the blob is done, or someone holds its lease."""

    DONE = "done"
    BUSY = "busy"


def addressable(name: str) -> bool:
    """Whether a blob can be addressed by its name at all: HTTP clients remove `.` and `..` path segments before
    sending (RFC 3986 section 5.2.4; urllib3 does it for every URL the storage SDK sends), so `a/../b.csv` would reach
    `b.csv` (or fail the shared-key signature, which covers the path as written). Such a blob is neither read nor
    used in a receipt path: its function gets its name and empty content."""
    return not any(segment in (".", "..") for segment in name.split("/"))


def quoted(etag: str) -> str:
    return f'"{etag.strip(chr(34))}"'


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def blob_properties(props) -> dict:
    """The `Properties` trigger metadata the host hands the worker (JSON, so dates are ISO strings)."""
    settings = props.content_settings
    md5 = settings.content_md5 if settings else None
    return {
        "ETag": props.etag,
        "LastModified": _iso(props.last_modified),
        "CreatedOn": _iso(getattr(props, "creation_time", None)),
        "ContentLength": props.size,
        "Length": props.size,
        "ContentType": settings.content_type if settings else None,
        "ContentEncoding": settings.content_encoding if settings else None,
        "ContentMD5": base64.b64encode(bytes(md5)).decode() if md5 else None,
        "BlobType": "BlockBlob" if str(props.blob_type).endswith("BlockBlob") else str(props.blob_type),
    }


def input_stream(container: str, blob: SeenBlob, data: bytes):
    """The `func.InputStream` the worker builds from the blob content and trigger metadata."""
    metadata = {
        "BlobTrigger": meta.Datum(f"{container}/{blob.name}", "string"),
        "Uri": meta.Datum(blob.url, "string"),
        "Properties": meta.Datum(json.dumps(blob.properties), "json"),
        "Metadata": meta.Datum(json.dumps(blob.metadata or {}), "json"),
    }
    return BlobConverter.decode(meta.Datum(data, "bytes"), trigger_metadata=metadata)


class BlobTriggerListener:
    def __init__(self, fn: IndexedFunction, pattern: BlobPathPattern, *, source: BlobServiceClient,
                 hosts: ContainerClient, poison: QueueClient, invoker: Invoker, host_id: str, poll_s: float,
                 tries: TryLimit, parallelism: int, lease_s: int = 30):
        self.fn = fn
        self.pattern = pattern
        self.source = source.get_container_client(pattern.container)
        self.hosts = hosts
        self.poison = poison
        self.invoker = invoker
        self.host_id = host_id
        self.poll_s = max(0.05, poll_s)
        self.tries = tries
        self.lease_s = lease_s
        self.invocations = Invocations(parallelism)
        self._done: set[tuple[str, str]] = set()
        self._inflight: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def receipt_name(self, blob: SeenBlob) -> str:
        name = blob.name if addressable(blob.name) else \
            "unaddressable/" + hashlib.sha256(blob.name.encode("utf-8", "surrogatepass")).hexdigest()
        return (f"blobreceipts/{self.host_id}/{self.fn.full_name}/{blob.etag.strip(chr(34))}/"
                f"{self.pattern.container}/{name}")

    # lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"blob:{self.fn.name}")

    async def stop(self, timeout: float) -> None:
        self._wake.set()
        await self.invocations.stop(timeout, self._task)

    # polling -------------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        healthy, missing_said = True, False
        while not self.invocations.stopping:
            blobs: list[SeenBlob] = []
            error: Exception | None = None
            missing = False
            try:
                blobs = await asyncio.to_thread(self._list)
            except ResourceNotFoundError:
                missing = True
            except Exception as exc:
                error = exc
            if error is not None:
                if healthy:
                    log.warning("Blob trigger 'Functions.%s': cannot list container '%s' (%s); retrying every %.1fs",
                                self.fn.name, self.pattern.container, short_error(error), self.poll_s)
                healthy = False
            else:
                if not healthy:
                    log.info("Blob trigger 'Functions.%s': storage is reachable again", self.fn.name)
                healthy = True
                if missing and not missing_said:
                    log.info("Blob trigger 'Functions.%s': container '%s' does not exist (yet)", self.fn.name,
                             self.pattern.container)
                missing_said = missing
            for blob in blobs:
                if blob.key in self._done or blob.key in self._inflight or self.invocations.stopping:
                    continue
                self._inflight.add(blob.key)
                self.invocations.start(self._process(blob))
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass

    def _list(self) -> list[SeenBlob]:
        found = []
        for props in self.source.list_blobs(name_starts_with=self.pattern.prefix or None, include=["metadata"]):
            if self.pattern.match(props.name) is None:
                continue
            props.etag = quoted(props.etag)  # listings carry it bare, headers quoted
            found.append(SeenBlob(props.name, props.etag, self.source.get_blob_client(props.name).url,
                                  blob_properties(props), dict(props.metadata or {})))
        return found

    # one blob ------------------------------------------------------------------------------------------------
    async def _process(self, blob: SeenBlob) -> None:
        try:
            async with self.invocations.slot():
                if not self.invocations.stopping:
                    await self._try_once(blob)
        except Exception as exc:
            log.warning("Blob trigger 'Functions.%s': %s/%s will be retried (%s)", self.fn.name,
                        self.pattern.container, blob.name, short_error(exc))
        finally:
            self._inflight.discard(blob.key)

    async def _try_once(self, blob: SeenBlob) -> None:
        invocation_id = str(uuid.uuid4())
        claim = await asyncio.to_thread(self._claim, blob, invocation_id)
        if claim is Unclaimed.DONE:
            self._done.add(blob.key)
            return
        if claim is Unclaimed.BUSY:
            return
        renewer = asyncio.create_task(self._renew(claim))
        try:
            if claim.exhausted:
                await asyncio.to_thread(self._send_to_poison, blob, claim)
                self._done.add(blob.key)
                return
            try:
                data = await asyncio.to_thread(self._download, blob)
            except (ResourceModifiedError, ResourceNotFoundError):
                log.info("Blob %s/%s changed or was deleted before 'Functions.%s' ran; skipping this version",
                         self.pattern.container, blob.name, self.fn.name)
                await asyncio.to_thread(self._complete, claim, "Superseded")
                self._done.add(blob.key)
                return
            stream = input_stream(self.pattern.container, blob, data)
            reason = f"New blob detected(LogsAndContainerScan): {self.pattern.container}/{blob.name}"
            result = await self.invoker.invoke(self.fn, stream, reason=reason, invocation_id=invocation_id)
            settle = self.tries.settle(result.ok, claim.tries)
            if settle is Settle.DONE:
                await asyncio.to_thread(self._complete, claim, "Succeeded")
                self._done.add(blob.key)
            elif settle is Settle.POISON:
                await asyncio.to_thread(self._send_to_poison, blob, claim)
                self._done.add(blob.key)
            else:
                log.warning("Blob trigger 'Functions.%s' failed on %s/%s (try %d of %d); it will be retried",
                            self.fn.name, self.pattern.container, blob.name, claim.tries, self.tries.max_tries)
        finally:
            renewer.cancel()
            await asyncio.to_thread(_release, claim.lease)

    def _claim(self, blob: SeenBlob, invocation_id: str) -> Claim | Unclaimed:
        name = self.receipt_name(blob)
        ensure_blob(self.hosts, name, {INCOMPLETE: invocation_id, TRIES: "0"})
        receipt = self.hosts.get_blob_client(name)
        try:
            lease = receipt.acquire_lease(lease_duration=self.lease_s)
        except HttpResponseError as exc:
            if is_conflict(exc):
                return Unclaimed.BUSY  # another host (or an earlier try still finishing) holds it
            raise
        try:
            metadata = receipt.get_blob_properties().metadata or {}
            if INCOMPLETE not in metadata:
                _release(lease)
                return Unclaimed.DONE
            tries = int(metadata.get(TRIES) or 0)
            if self.tries.spent(tries + 1):
                return Claim(receipt, lease, tries, exhausted=True)
            tries += 1
            receipt.set_blob_metadata({INCOMPLETE: invocation_id, TRIES: str(tries)}, lease=lease)
            return Claim(receipt, lease, tries)
        except BaseException:
            _release(lease)
            raise

    def _download(self, blob: SeenBlob) -> bytes:
        if not addressable(blob.name):
            log.warning("Blob trigger 'Functions.%s': a blob in '%s' has a name with '.'/'..' segments that cannot be "
                        "addressed safely; its function gets the name and no content", self.fn.name,
                        self.pattern.container)
            return b""
        client = self.source.get_blob_client(blob.name)
        return client.download_blob(etag=blob.etag, match_condition=MatchConditions.IfNotModified).readall()

    def _complete(self, claim: Claim, outcome: str) -> None:
        claim.receipt.set_blob_metadata({TRIES: str(claim.tries), "Outcome": outcome}, lease=claim.lease)

    def _send_to_poison(self, blob: SeenBlob, claim: Claim) -> None:
        send_to_poison(self.poison, self.fn, self.pattern.container, blob, claim.tries)
        self._complete(claim, "Poisoned")

    async def _renew(self, claim: Claim) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await asyncio.to_thread(claim.lease.renew)
            except Exception as exc:
                log.debug("could not renew the receipt lease: %s", short_error(exc))


def send_to_poison(poison: QueueClient, fn: IndexedFunction, container: str, blob: SeenBlob, tries: int) -> None:
    """The message the extension writes to `webjobs-blobtrigger-poison` once a blob's tries are used up."""
    message = {"Type": "BlobTrigger", "FunctionId": fn.full_name, "BlobType": "BlockBlob",
               "ContainerName": container, "BlobName": blob.name, "ETag": blob.etag}
    ensure_queue(poison)
    poison.send_message(json.dumps(message))
    log.error("Blob trigger 'Functions.%s' gave up on %s/%s after %d tries; a message is on queue '%s'",
              fn.name, container, blob.name, tries, POISON_QUEUE)


def _release(lease: BlobLeaseClient) -> None:
    try:
        lease.release()
    except Exception as exc:  # it expires on its own
        log.debug("could not release the receipt lease: %s", short_error(exc))

