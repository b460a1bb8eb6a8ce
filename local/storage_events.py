"""Local stand-in for the storage account's Event Grid system topic and the blob trigger's subscription.

In Azure (infra/app/events.bicep + infra/scripts/postdeploy.sh) a system topic on the app's storage account has a
subscription that sends `Microsoft.Storage.BlobCreated` (filter `subjectBeginsWith
/blobServices/default/containers/{INCOMING_CONTAINER}/blobs/`) to the blobs extension webhook
`/runtime/webhooks/blobs?functionName=Host.Functions.blob_upload&code={blobs_extension key}`, Event Grid schema,
retry policy 30 attempts / 24 h. This process plays that part against Azurite, which has no event source:
- on start it validates the subscription as Event Grid does (a `SubscriptionValidation` event; the endpoint must
  answer 200 `{"validationResponse": code}`, else no subscription: exit 1);
- it lists the filtered container every `--poll-s` and, for each blob name and ETag it has not seen, publishes a
  BlobCreated event shaped as the documented sample (https://learn.microsoft.com/azure/event-grid/
  event-schema-blob-storage, "Microsoft.Storage.BlobCreated event");
- delivery is as unkind as Event Grid allows: at least once (with `--seed`ed chance an event is delivered twice),
  a batch found in one listing goes out shuffled (no order guarantee), and each attempt, answer timeout, retry and
  drop follows local/eventgrid_delivery.py (Event Grid's documented schedule and retry policy).
What it has published is kept in `--state`, so a restart neither repeats nor loses events for blobs written while
it was down; on a first start every blob already there gets an event (Azure's new subscription would see only later
writes: the app handles either, one dataset per blob ETag)."""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from local.eventgrid_delivery import (
    EVENT_TTL_S,
    MAX_DELIVERY_ATTEMPTS,
    Outcome,
    RetryPolicy,
    decide,
    post_event,
)

log = logging.getLogger("storage_events")

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
SUBJECT_PREFIX = "/blobServices/default/containers/"
LOCAL_TOPIC = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/"
               "Microsoft.Storage/storageAccounts/{account}")


@dataclass(frozen=True)
class Subscription:
    """The event subscription as postdeploy.sh creates it."""

    endpoint_url: str
    subject_begins_with: str
    max_delivery_attempts: int = MAX_DELIVERY_ATTEMPTS
    event_ttl_s: float = EVENT_TTL_S

    @property
    def container(self) -> str:
        if not self.subject_begins_with.startswith(SUBJECT_PREFIX):
            raise ValueError(f"subjectBeginsWith must start with {SUBJECT_PREFIX}")
        return self.subject_begins_with[len(SUBJECT_PREFIX):].split("/", 1)[0]


def blob_created_event(*, account: str, container: str, blob: str, etag: str, url: str, content_type: str | None,
                       length: int, now: datetime | None = None) -> dict:
    """A BlobCreated event in the Event Grid schema, field for field as the documented sample."""
    request_id = str(uuid.uuid4())
    return {
        "topic": LOCAL_TOPIC.format(account=account),
        "subject": f"{SUBJECT_PREFIX}{container}/blobs/{blob}",
        "eventType": BLOB_CREATED,
        "eventTime": (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "id": request_id,
        "data": {
            "api": "PutBlob",
            "clientRequestId": str(uuid.uuid4()),
            "requestId": request_id,
            "eTag": etag.strip('"'),
            "contentType": content_type or "application/octet-stream",
            "contentLength": length,
            "blobType": "BlockBlob",
            "url": url,
            "sequencer": f"{time.time_ns():032x}",
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


@dataclass(order=True)
class Delivery:
    due: float
    seq: int
    event: dict = field(compare=False)
    first_at: float = field(compare=False, default=0.0)
    attempts: int = field(compare=False, default=0)


class StorageEvents:
    def __init__(self, container: ContainerClient, subscription: Subscription, *, state_path: Path | None,
                 seed: int = 0, duplicate_p: float = 0.2, session: requests.Session | None = None):
        self.container = container
        self.subscription = subscription
        self.state_path = state_path
        self.rng = random.Random(seed)
        self.duplicate_p = duplicate_p
        self.session = session or requests.Session()
        self.pending: list[Delivery] = []
        self._seq = 0
        self.seen: set[str] = self._load_state()

    # subscription --------------------------------------------------------------------------------------------
    def validate(self) -> bool:
        code = str(uuid.uuid4())
        event = {"id": str(uuid.uuid4()), "topic": LOCAL_TOPIC.format(account=self.container.account_name),
                 "subject": "", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                 "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "metadataVersion": "1",
                 "dataVersion": "2", "data": {"validationCode": code}}
        try:
            answer = self.session.post(self.subscription.endpoint_url, json=[event], timeout=30,
                                       headers={"aeg-event-type": "SubscriptionValidation"})
            return answer.status_code == 200 and answer.json().get("validationResponse") == code
        except (requests.RequestException, ValueError, AttributeError):
            return False

    # the topic -----------------------------------------------------------------------------------------------
    def scan(self) -> list[dict]:
        """Events for blobs (name, ETag) not published yet, under the subscription's subject filter."""
        found = {}
        prefix = self.subscription.subject_begins_with[len(SUBJECT_PREFIX) + len(self.container.container_name):]
        blob_prefix = prefix.removeprefix("/blobs/")
        try:
            for props in self.container.list_blobs(name_starts_with=blob_prefix or None):
                found[f"{props.name}@{props.etag.strip(chr(34))}"] = props
        except ResourceNotFoundError:
            pass  # no container yet: nothing written
        events = []
        for key, props in found.items():
            if key in self.seen:
                continue
            settings = props.content_settings
            events.append(blob_created_event(
                account=self.container.account_name, container=self.container.container_name, blob=props.name,
                etag=props.etag, url=self.container.get_blob_client(props.name).url,
                content_type=settings.content_type if settings else None, length=props.size or 0))
            self.seen.add(key)
        if events:
            self._save_state()
        return events

    def publish(self, events: list[dict], now: float) -> None:
        """Out of order and at least once: shuffled, and each maybe queued twice."""
        self.rng.shuffle(events)
        for event in events:
            copies = 2 if self.rng.random() < self.duplicate_p else 1
            for _ in range(copies):
                self._seq += 1
                heapq.heappush(self.pending, Delivery(now + self.rng.random() * 0.2, self._seq, event, now))

    # delivery ------------------------------------------------------------------------------------------------
    def deliver_due(self, now: float) -> None:
        policy = RetryPolicy(self.subscription.max_delivery_attempts, self.subscription.event_ttl_s)
        while self.pending and self.pending[0].due <= now:
            item = heapq.heappop(self.pending)
            status = post_event(self.session, self.subscription.endpoint_url, item.event,
                                delivery_count=item.attempts, data_version="")
            item.attempts += 1
            decision = decide(status, attempts_made=item.attempts, first_at=item.first_at, now=now, policy=policy)
            if decision.outcome is Outcome.DELIVERED:
                continue
            if decision.outcome is Outcome.DROPPED:
                log.error("event %s dropped: %s", item.event["id"], decision.why)
                continue
            item.due = decision.due
            log.warning("event %s: webhook answered %s; retrying in %.0fs", item.event["id"], status,
                        item.due - now)
            heapq.heappush(self.pending, item)

    def run(self, stop: threading.Event, poll_s: float) -> None:
        while not stop.is_set():
            try:
                self.publish(self.scan(), time.monotonic())
            except Exception as exc:  # storage briefly unreachable: the next listing catches up
                log.warning("cannot list container '%s' (%s)", self.container.container_name,
                            exc.__class__.__name__)
            self.deliver_due(time.monotonic())
            stop.wait(poll_s)

    # state ---------------------------------------------------------------------------------------------------
    def _load_state(self) -> set[str]:
        if self.state_path is None or not self.state_path.is_file():
            return set()
        return set(json.loads(self.state_path.read_text(encoding="utf-8")))

    def _save_state(self) -> None:
        if self.state_path is not None:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(sorted(self.seen)), encoding="utf-8")
            os.replace(tmp, self.state_path)


def main(argv: list[str] | None = None) -> None:
    """Connection and webhook URL (it holds the key) come from the environment, never argv."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subject-begins-with", required=True)
    parser.add_argument("--state", type=Path, default=None)
    parser.add_argument("--poll-s", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duplicate-p", type=float, default=0.2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request (and its headers) at INFO
    subscription = Subscription(os.environ["STORAGE_EVENTS_WEBHOOK_URL"], args.subject_begins_with)
    service = BlobServiceClient.from_connection_string(os.environ["AzureWebJobsStorage"])
    events = StorageEvents(service.get_container_client(subscription.container), subscription,
                           state_path=args.state, seed=args.seed, duplicate_p=args.duplicate_p)
    if not events.validate():
        log.error("the webhook did not answer the subscription validation; no subscription")
        raise SystemExit(1)
    log.info("subscription validated; watching container '%s'", subscription.container)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    events.run(stop, args.poll_s)


if __name__ == "__main__":
    main()
